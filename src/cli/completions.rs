//! `lgss completions SHELL`: tab completion of subcommands, flags and their
//! choices, generated from the same clap definitions as the parser.

use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "lgss", &mut std::io::stdout());
    Ok(())
}
