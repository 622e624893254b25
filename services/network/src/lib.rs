//! Networks, endpoints and container network namespaces
