//! Black-box tests: real nodes over HTTP with real clients.
#![allow(clippy::unwrap_used)]

mod auth;
mod azure_backend;
mod bad_input;
mod bench_smoke;
mod cache;
mod cluster;
mod docker;
mod gc;
mod gcs_backend;
mod helm;
mod metrics;
mod notifications;
mod oci_client;
mod oci_discovery;
mod oci_management;
mod oci_pull;
mod oci_push;
mod oras;
mod partitions;
mod podman;
mod purge;
mod ratelimit;
mod referrers;
mod restart;
mod s3_backend;
mod skopeo;
mod storage_faults;
mod swift_backend;
mod tls;
mod token_service;
mod tokens;
