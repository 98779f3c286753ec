//! Support for the tests and benchmarks that run the real Lambda function binaries: [`runtime_api`], a
//! local Lambda Runtime API. Not part of any deployed binary.

pub mod runtime_api;
