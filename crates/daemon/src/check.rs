//! `cdcd check`: preflight of the source server, one line per setting with the fix. Exits non-zero
//! when anything would stop cdcd or hide changes from it.

use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;

use cdcd_binlog::{check_source, Status};

use crate::config::{Config, SourceArgs};

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    source: SourceArgs,
}

pub async fn run(config_path: Option<&Path>, args: CheckArgs) -> Result<()> {
    let config = Config::load(config_path)?;
    let options = args.source.options(&config)?;
    let findings = check_source(&options).await?;
    for f in &findings {
        println!("{:<4}  {:<26} {}", f.status.as_str(), f.item, f.detail);
    }
    let failed = findings.iter().filter(|f| f.status == Status::Fail).count();
    if failed > 0 {
        bail!("{failed} check(s) failed; fix them before running cdcd");
    }
    Ok(())
}
