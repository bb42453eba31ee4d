//! Support for tests against a real API server: a client and a fresh namespace per test, the
//! CRDs installed once per run, a pod driver standing in for the kubelet, and the operator and
//! webhook started as real processes.
//!
//! The control plane is started by `kind-tests/scripts/control-plane.sh up DIR` (the test
//! command in README.md does it) and found through `PROW_TEST_KUBECONFIG`.

pub mod bench;
pub mod browser;
pub mod build_clusters;
pub mod cimaster;
pub mod control_plane;
pub mod env;
pub mod fixtures;
pub mod github;
pub mod hook;
pub mod https;
pub mod operator;
pub mod pod_driver;
pub mod pods;
pub mod process;
pub mod services;
pub mod webhook;

pub use env::TestEnv;
pub use pod_driver::PodDriver;
