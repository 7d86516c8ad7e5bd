//! Request bodies for each kind of receiver. Pure: a finding in, bytes out.

pub mod webhook;
