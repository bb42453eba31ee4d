//! The rules of `prow-hook`, GitHub's side of the CI loop, as upstream's hook, trigger plugin and
//! crier GitHub reporter apply them: GitHub's webhook payloads ([`events`]), the HMAC secret file
//! ([`secrets`]), the commands of comments ([`commands`]), which jobs an event starts
//! ([`select`]) and the runs it makes ([`runs`]), and what goes back to the pull request
//! ([`report`]), and who is trusted ([`trust`]). Pure: the process in `hook/` fetches, calls these, and applies.

pub mod commands;
pub mod events;
pub mod fuzzing;
pub mod report;
pub mod runs;
pub mod secrets;
pub mod select;
pub mod trust;

#[cfg(test)]
mod tests;
