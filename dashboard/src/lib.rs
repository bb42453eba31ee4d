//! prow-dashboard: the read-only web UI. [`cache`] keeps what the pages read (jobs as rows,
//! pools, clusters, definitions) from watches; [`logs`] reads a run's log from its bucket or
//! its pod; [`pages`] renders the pages and serves them. The rules (filters, paging, log
//! windows, colours, pictures) are pure, in `prow_api::dashboard`.

pub mod cache;
pub mod clusters;
pub mod logs;
pub mod metrics;
pub mod pages;
