//! `upid.v1.QueryService` over the store (to be written).
