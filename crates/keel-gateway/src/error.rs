//! The one error type of the crate: a configuration the rules cannot honour.

/// Why a gateway component refused its configuration or a change to it.
///
/// Errors are only raised when building or reconfiguring a component; the
/// per-request calls never fail, so the request path has no error branch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// More backends than the fixed-size [`EligibleSet`](crate::EligibleSet) can name.
    #[error("{count} nodes configured, at most {max} are supported")]
    TooManyNodes {
        /// Nodes asked for.
        count: usize,
        /// [`NODES_MAX`](crate::NODES_MAX).
        max: usize,
    },
    /// A node index past the end of the component's node list.
    #[error("node {node} is out of range for {count} nodes")]
    NodeOutOfRange {
        /// The index given.
        node: usize,
        /// Nodes the component knows.
        count: usize,
    },
    /// A weight above [`WEIGHT_MAX`](crate::WEIGHT_MAX).
    #[error("weight {weight} is above the maximum {max}")]
    WeightTooLarge {
        /// The weight given.
        weight: u32,
        /// [`WEIGHT_MAX`](crate::WEIGHT_MAX).
        max: u32,
    },
    /// A numeric setting outside the range its rule makes sense for.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The configuration field.
        field: &'static str,
        /// What a valid value looks like.
        reason: &'static str,
    },
}
