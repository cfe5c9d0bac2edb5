//! What a copied binary ships beside itself: shell completions (`reclaim-trace completions
//! SHELL`) and man pages (`reclaim-trace __man DIR`, for `cargo xtask dist`), both generated
//! from the clap definitions in cli.rs, so that they cannot disagree with `--help`.

use std::{io::Write, path::Path};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

const NAME: &str = "reclaim-trace";

/// The command line as completions offer it: `Cli` without its hidden internal subcommands.
/// clap_complete completes hidden subcommands too (clap#1335) and clap cannot remove a
/// subcommand, so the root is put together again from `Cli`'s own arguments and its visible
/// subcommands: nothing of the command line is restated here.
fn completed_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new(NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// Write the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut completed_command(), NAME, &mut script);
    if shell == Shell::Bash {
        // clap_complete 4.6's bash script spells a hyphenated name two ways (clap#6421): its
        // loop sets cmd="reclaim__trace__subcmd__top", the case arms read
        // "reclaim__subcmd__trace__subcmd__top)", so nothing after a subcommand would complete.
        // The arms are spelled like the loop (a no-op once clap_complete is fixed).
        let text = String::from_utf8(script)?;
        script = text
            .replace(&NAME.replace('-', "__subcmd__"), &NAME.replace('-', "__"))
            .into_bytes();
    }
    out.write_all(&script)?;
    Ok(())
}

/// Write the man pages into `dir` (created if missing): `reclaim-trace.1` and one
/// `reclaim-trace-SUBCOMMAND.1` per subcommand that `--help` lists.
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subcommands `--help` lists (the hidden internal ones are not completed).
    fn visible_subcommands() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn bash_completion_offers_every_subcommand_and_no_internal_one() {
        assert_eq!(Cli::command().get_name(), NAME);
        let mut out = Vec::new();
        completions(Shell::Bash, &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(
            script.contains("complete -F _reclaim__trace"),
            "not a bash completion script for reclaim-trace"
        );
        // What `reclaim-trace <TAB>` offers: the opts of the top-level case.
        let top = script
            .lines()
            .skip_while(|l| l.trim() != "reclaim__trace)")
            .nth(1)
            .and_then(|l| l.trim().strip_prefix("opts=\""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("no top-level opts line");
        let offered: Vec<&str> = top.split_whitespace().collect();
        let subs = visible_subcommands();
        assert!(subs.len() >= 9, "{subs:?}");
        for sub in &subs {
            assert!(
                offered.contains(&sub.as_str()),
                "`{sub}` not in {offered:?}"
            );
        }
        for flag in ["--verbose", "--help", "--version"] {
            assert!(offered.contains(&flag), "`{flag}` not in {offered:?}");
        }
        // Every state the loop can set has its case arm (clap#6421: with a hyphenated name
        // none matched, and `reclaim-trace summary --<TAB>` offered nothing).
        let states: Vec<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|s| !s.is_empty())
            .collect();
        assert!(states.len() > subs.len(), "{states:?}");
        for state in states {
            assert!(
                script.lines().any(|l| l.trim() == format!("{state})")),
                "no case arm for the state {state}"
            );
        }
        // Internal subcommands are named `__...`; bash matches subcommand words as `PARENT,NAME)`.
        assert!(
            !offered.iter().any(|w| w.starts_with("__")) && !script.contains(",__"),
            "an internal subcommand is completed"
        );
    }

    #[test]
    fn a_man_page_per_subcommand_and_one_for_the_tool() {
        let dir = std::env::temp_dir().join(format!("reclaim-trace-man-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        man_pages(&dir).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want: Vec<String> = visible_subcommands()
            .iter()
            .map(|s| format!("reclaim-trace-{s}.1"))
            .chain(["reclaim-trace.1".to_string()])
            .collect();
        want.sort();
        assert_eq!(names, want);
        let top = std::fs::read_to_string(dir.join("reclaim-trace.1")).unwrap();
        assert!(top.starts_with(".ie"), "{}", &top[..top.len().min(200)]);
        assert!(
            top.contains("reclaim\\-trace\\-summary(1)"),
            "no SUBCOMMANDS section"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
