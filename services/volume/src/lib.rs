//! Named and anonymous volumes and mount resolution
