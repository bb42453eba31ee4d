//! The rules of `prow-dashboard`, the read-only web UI: what it keeps of a job ([`row`]), the
//! list it keeps them in, newest first ([`index`]), the jobs page's filters and paging
//! ([`filter`]), windows and searches over a log read in chunks ([`log`]), ANSI colours as HTML
//! ([`ansi`]), the badge and the history chart as SVG ([`svg`]) and how times read ([`when`]).
//! Pure: the process in `dashboard/` watches, reads storage, calls these and renders.

pub mod ansi;
pub mod filter;
pub mod index;
pub mod log;
pub mod row;
pub mod svg;
pub mod when;
