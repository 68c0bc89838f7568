//! The `--admin-token` argument every command that talks to the nodes'
//! admin routes takes, defined once.

/// Admin token of the nodes (`--admin-token`, `KEEL_ADMIN_TOKEN`); the
/// development token of `keel up` unless given.
#[derive(clap::Args, Clone, Debug)]
pub struct AdminToken {
    /// Admin token of the nodes.
    #[arg(
        long = "admin-token",
        env = "KEEL_ADMIN_TOKEN",
        default_value = "keel-admin-dev",
        hide_env_values = true
    )]
    pub admin_token: String,
}
