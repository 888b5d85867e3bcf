//! `kura completions <shell>` and `kura man`: generated from the same
//! clap definitions the command line parses with.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::ctx::{print_bytes, Ctx};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

impl CompletionsArgs {
    /// Writes the completion script to stdout, e.g.
    /// `kura completions bash > /etc/bash_completion.d/kura`.
    pub fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        let mut cmd = crate::Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut cmd, "kura", &mut script);
        print_bytes(&script)
    }
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command and subcommand (kura.1, kura-sign-review.1, …) into this
    /// directory (created); without it, the top page is printed to standard output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl ManArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let cmd = crate::Cli::command();
        let Some(dir) = self.out else {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            return print_bytes(&page);
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        let mut written = Vec::new();
        let mut todo = vec![cmd];
        while let Some(cmd) = todo.pop() {
            todo.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
            let path = clap_mangen::Man::new(cmd)
                .generate_to(&dir)
                .with_context(|| format!("cannot write a man page into {}", dir.display()))?;
            written.push(path.display().to_string());
        }
        written.sort();
        ctx.done(
            "man",
            serde_json::json!({"dir": dir.display().to_string(), "pages": written}),
            &format!("{} man pages written to {}", written.len(), dir.display()),
        )
    }
}
