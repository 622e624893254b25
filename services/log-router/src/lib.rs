//! Per-container log pipelines, drivers and log reading
