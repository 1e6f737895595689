//! Routing decisions of a destination, each a pure function of the event: which events it
//! wants ([`filter`]), which of the sender's headers it sees ([`headers`]), and by which key
//! its deliveries are ordered ([`ordering`]).

pub mod filter;
pub mod headers;
pub mod ordering;

pub use filter::EventFilter;
pub use headers::ForwardHeaders;
pub use ordering::{OnDead, OrderedDelivery};
