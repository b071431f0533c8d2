//! The datasets the job copies. Placeholder until issue 15's frame is merged: it only declares
//! the record models of refunds and the settlement ledger.

pub mod refunds;
pub mod settlements;
