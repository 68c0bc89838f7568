//! The admin token every command that talks to the nodes' admin routes
//! needs, defined once. A secret never comes from the command line (which
//! every user of the host can read): it comes from a file or from the
//! environment.

use std::path::PathBuf;

use anyhow::Context;

/// Where the nodes' admin token comes from: `--admin-token-file`
/// (`KEEL_ADMIN_TOKEN_FILE`), else `KEEL_ADMIN_TOKEN`, else the development
/// token of `keel up`.
#[derive(clap::Args, Clone, Debug)]
pub struct AdminToken {
    /// File holding the nodes' admin token (or set KEEL_ADMIN_TOKEN;
    /// default: the development token). Never a flag: a command line is
    /// readable by every user of the host.
    #[arg(long, env = "KEEL_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
}

impl AdminToken {
    /// The token, read from its file or the environment.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let token = keel_secrets::read(self.admin_token_file.as_deref(), "KEEL_ADMIN_TOKEN")
            .context("reading the admin token")?;
        Ok(token.unwrap_or_else(|| keel_node::config::DEV_ADMIN_TOKEN.to_owned()))
    }
}
