//! The local runner of the module: an HTTP server that serves the same handlers as the Lambda functions
//! (see [`server`]), plus migrations, demo data, spill files and benchmarks for the `analytics` command.

pub mod bench;
pub mod demo_load;
pub mod server;
pub mod spill;
