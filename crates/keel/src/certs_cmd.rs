//! `keel certs`: the cluster's certificate authority (`keel_tls::authority`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use keel_tls::authority::{self, Request, Subject, Validity};

/// `keel certs …`.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create the cluster's CA in --dir: `ca.pem` (the bundle every host
    /// gets), `ca-cert.pem` and `ca-key.pem` (keep the key off the hosts).
    Init {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// Issue member --id its certificate, naming the host names and
    /// addresses its peers, gateways and clients reach it by.
    Node {
        #[command(flatten)]
        dir: DirArg,
        /// The member id.
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        leaf: LeafArgs,
    },
    /// Issue a gateway its certificate.
    Gateway(Named),
    /// Issue a client certificate (an operator's tool, a shop's service).
    Client(Named),
    /// Start a CA rollover: a new CA signs from now on and the bundle
    /// trusts both. Copy `ca.pem` to every host, reissue and copy every
    /// certificate, then run `retire-old-ca`. Processes reload the files
    /// as they change: no restart, no downtime.
    RotateCa {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// End a rollover: the bundle trusts only the current CA. Copy
    /// `ca.pem` to every host once more.
    RetireOldCa {
        #[command(flatten)]
        dir: DirArg,
    },
}

/// The CA's directory.
#[derive(clap::Args)]
pub struct DirArg {
    /// The CA's directory.
    #[arg(long, env = "KEEL_CA_DIR", default_value = "keel-ca")]
    dir: PathBuf,
}

/// A gateway's or client's certificate request.
#[derive(clap::Args)]
pub struct Named {
    #[command(flatten)]
    dir: DirArg,
    /// Its name (letters, digits and '-').
    #[arg(long)]
    name: String,
    #[command(flatten)]
    leaf: LeafArgs,
}

/// A new CA's name and lifetime.
#[derive(clap::Args)]
pub struct CaArgs {
    /// The CA's name.
    #[arg(long, default_value = "Keel cluster CA")]
    name: String,
    /// Days the CA is valid.
    #[arg(long, default_value_t = 3650)]
    days: u64,
}

/// What every issued certificate takes.
#[derive(clap::Args)]
pub struct LeafArgs {
    /// A DNS name it is reached by (repeat for more).
    #[arg(long = "dns")]
    dns_names: Vec<String>,
    /// An address it is reached at (repeat for more).
    #[arg(long = "ip")]
    ips: Vec<IpAddr>,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Where to write it (default: the CA's directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn days(n: u64) -> Validity {
    Validity::from_now(Duration::from_secs(n.saturating_mul(86_400)))
}

/// Runs `keel certs …`.
pub fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Init { dir, ca } => {
            let bundle = authority::create(&dir.dir, &ca.name, days(ca.days))?;
            println!("created a CA in {}", dir.dir.display());
            println!("  give every host {}", bundle.display());
            println!(
                "  keep {} off the hosts",
                dir.dir.join(authority::CA_KEY_FILE).display()
            );
        }
        Cmd::Node { dir, id, leaf } => issue(&dir, Subject::Node { id }, leaf)?,
        Cmd::Gateway(n) => issue(&n.dir, Subject::Gateway { name: n.name }, n.leaf)?,
        Cmd::Client(n) => issue(&n.dir, Subject::Client { name: n.name }, n.leaf)?,
        Cmd::RotateCa { dir, ca } => {
            authority::roll_over(&dir.dir, &ca.name, days(ca.days))?;
            println!(
                "a new CA signs from now on; {} trusts the old and the new",
                dir.dir.join(authority::BUNDLE_FILE).display()
            );
            println!("next: copy ca.pem to every host, reissue every certificate and copy it, then `keel certs retire-old-ca`");
        }
        Cmd::RetireOldCa { dir } => {
            authority::retire_old(&dir.dir)?;
            println!(
                "{} now trusts only the current CA: copy it to every host",
                dir.dir.join(authority::BUNDLE_FILE).display()
            );
        }
    }
    Ok(())
}

fn issue(dir: &DirArg, subject: Subject, leaf: LeafArgs) -> anyhow::Result<()> {
    let (dns_names, ips) = if leaf.dns_names.is_empty() && leaf.ips.is_empty() {
        eprintln!("note: no --dns or --ip given: the certificate names loopback only");
        (
            vec!["localhost".to_owned()],
            vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ],
        )
    } else {
        (leaf.dns_names, leaf.ips)
    };
    let req = Request {
        subject,
        dns_names,
        ips,
        validity: days(leaf.days),
    };
    let out = leaf.out.unwrap_or_else(|| dir.dir.clone());
    let files = authority::issue(&dir.dir, &req, &out)
        .with_context(|| format!("issuing from the CA in {}", dir.dir.display()))?;
    println!("certificate {}", files.cert.display());
    println!(
        "key         {} (readable by its owner only)",
        files.key.display()
    );
    println!("CA bundle   {}", files.ca.display());
    Ok(())
}
