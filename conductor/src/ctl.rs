//! `loophole-conductor ctl --join CODE CMD`: presses and questions from a terminal or a script.
//! A press is parsed with the engine's text command parser (the terminal's words: `scene.trigger
//! SCENE [--quantise Q]`, `clip.trigger CLIP`, `stop [TRACK]`, `tempo BPM`, ...), sent through a
//! [`Client`] named `ctl-<random>` that asks for no backlog, and printed once sequenced:
//! `scheduled seq N id I at beat B (bar.beat)`. `status [--json]` and `log [--since SEQ]` ask
//! the conductor (`Query`).
//!
//! Exit codes: 0 done, 1 refused or the conductor unreachable, 2 bad input.
//!
//! Thread: the main thread of the `ctl` process (the client runs its own).

use std::io::Write;
use std::time::{Duration, Instant};

use loophole_engine::control::{ControlCommand, HELP, TextCommand, text};
use loophole_engine::time::Beats;
use loophole_net_proto::v1::{Answer, Query, ScheduledCommand, Status};

use crate::band::bar_beat;
use crate::client::{Client, ClientOptions, NodeEvent, Pressed};
use crate::join::{JoinCode, hex, role_name};

/// What `ctl` was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum CtlCommand {
    /// Press this.
    Press(ControlCommand),
    /// Show the band's state.
    Status {
        /// As JSON.
        json: bool,
    },
    /// Show the log after a seq.
    Log {
        /// Entries after this seq.
        since: u64,
    },
}

/// Reads `ctl`'s words. The error is one line, for exit code 2.
pub fn parse(words: &[String]) -> Result<CtlCommand, String> {
    let Some((verb, rest)) = words.split_first() else { return Err(format!("no command given\n{HELP}")) };
    match verb.as_str() {
        "status" => match rest {
            [] => Ok(CtlCommand::Status { json: false }),
            [j] if j == "--json" => Ok(CtlCommand::Status { json: true }),
            _ => Err(format!("status: unexpected `{}` (status [--json])", rest.join(" "))),
        },
        "log" => match rest {
            [] => Ok(CtlCommand::Log { since: 0 }),
            [flag, n] if flag == "--since" => n
                .parse()
                .map(|since| CtlCommand::Log { since })
                .map_err(|_| format!("log --since {n}: not a sequence number")),
            _ => Err(format!("log: unexpected `{}` (log [--since SEQ])", rest.join(" "))),
        },
        _ => match text::parse(&words.join(" ")) {
            Ok(TextCommand::Control(c)) => Ok(CtlCommand::Press(c)),
            Ok(other) => {
                Err(format!("`{}` is a terminal command, not one for the conductor ({other:?})", words.join(" ")))
            }
            Err(e) => Err(format!("{e}\n{HELP}")),
        },
    }
}

fn connect(code: &JoinCode) -> anyhow::Result<(Client, String)> {
    let mut tag = [0u8; 3];
    getrandom::fill(&mut tag).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    let name = format!("ctl-{}", hex(&tag));
    let mut opts = ClientOptions::new(&name);
    opts.skip_backlog = true;
    Ok((Client::connect(code, opts)?, name))
}

fn status(client: &Client) -> anyhow::Result<Status> {
    match client.query(Query::Status, Duration::from_secs(5))? {
        Answer::Status(s) => Ok(*s),
        other => anyhow::bail!("the conductor answered something else: {other:?}"),
    }
}

/// Runs `command` against the conductor of `code`, printing to `out`; returns the exit code.
pub fn run(code: &JoinCode, command: CtlCommand, out: &mut impl Write) -> anyhow::Result<i32> {
    let (client, name) = connect(code)?;
    match command {
        CtlCommand::Press(c) => press(&client, &name, c, out),
        CtlCommand::Status { json } => {
            let s = status(&client)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                print_status(&s, out)?;
            }
            Ok(0)
        }
        CtlCommand::Log { since } => {
            let mut since = since;
            loop {
                let Answer::Log { entries, head } = client.query(Query::Log { since }, Duration::from_secs(5))? else {
                    anyhow::bail!("the conductor answered something else");
                };
                for e in &entries {
                    writeln!(out, "{}", log_line(e))?;
                }
                match entries.last() {
                    Some(last) if last.seq < head => since = last.seq,
                    _ => return Ok(0),
                }
            }
        }
    }
}

/// One log entry as `ctl log` prints it.
pub fn log_line(e: &ScheduledCommand) -> String {
    format!("seq {} id {} beat {:.3} origin {} command {:?}", e.seq, e.id, e.target_beat, e.origin, e.command)
}

fn press(client: &Client, name: &str, command: ControlCommand, out: &mut impl Write) -> anyhow::Result<i32> {
    let bpb = status(client).map(|s| s.beats_per_bar).unwrap_or(4.0);
    let press = match client.press(command) {
        Pressed::Sent(p) => p,
        Pressed::Local => {
            writeln!(out, "not sent: the conductor is not reachable")?;
            return Ok(1);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match client.next_event(left) {
            Some(NodeEvent::ScheduleAt { seq, id, beat, origin, .. }) if origin == name => {
                writeln!(out, "scheduled seq {seq} id {id} at beat {:.3} ({})", beat.0, bar_beat(Beats(beat.0), bpb))?;
                return Ok(0);
            }
            Some(NodeEvent::PressRefused { press: p, reason }) if p == press => {
                writeln!(out, "refused: {reason}")?;
                return Ok(1);
            }
            Some(NodeEvent::Refused { reason }) => {
                writeln!(out, "refused: {reason}")?;
                return Ok(1);
            }
            Some(_) => {}
            None => break,
        }
    }
    writeln!(out, "no answer from the conductor within 5 s")?;
    Ok(1)
}

fn print_status(s: &Status, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "set: {} (version {})  beat {:.2} ({})  {:.1} BPM  lead {:.0} ms  log head {}",
        s.set,
        s.set_version,
        s.beat,
        bar_beat(Beats(s.beat), s.beats_per_bar),
        s.bpm,
        s.lead_us as f64 / 1000.0,
        s.head
    )?;
    writeln!(out, "nodes ({}):", s.nodes.len())?;
    for n in &s.nodes {
        let report = match &n.report {
            Some(r) => format!(
                "  tracks {}  output {}  late {}  xruns {}{}",
                if r.tracks.is_empty() { "-".to_string() } else { r.tracks.join(",") },
                r.ahead_us.map_or("-".to_string(), |a| format!("{:+.1} ms", a as f64 / 1000.0)),
                r.late,
                r.xruns,
                if r.local_presses > 0 { format!("  local presses {}", r.local_presses) } else { String::new() }
            ),
            None => String::new(),
        };
        writeln!(
            out,
            "  {:<16} {:<9} rtt {:>7.2} ms  acked {}{report}",
            n.name,
            role_name(n.role),
            n.rtt_us as f64 / 1000.0,
            n.acked
        )?;
    }
    writeln!(out, "last commands:")?;
    for e in &s.recent {
        let executed: Vec<String> = s
            .executions
            .iter()
            .filter(|x| x.id == e.id)
            .map(|x| format!("{}@{:.3}{}", x.node, x.beat, if x.late { " late" } else { "" }))
            .collect();
        writeln!(
            out,
            "  seq {:>4}  {:<10} at beat {:>9.3} ({})  {:?}{}",
            e.seq,
            e.origin,
            e.target_beat,
            bar_beat(Beats(e.target_beat), s.beats_per_bar),
            e.command,
            if executed.is_empty() { String::new() } else { format!("  executed: {}", executed.join(", ")) }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn ctl_words_are_understood_or_refused_clearly() {
        assert_eq!(parse(&words("status --json")), Ok(CtlCommand::Status { json: true }));
        assert_eq!(parse(&words("log --since 4")), Ok(CtlCommand::Log { since: 4 }));
        assert!(matches!(
            parse(&words("scene.trigger chorus --quantise bar")),
            Ok(CtlCommand::Press(ControlCommand::SceneTrigger { .. }))
        ));
        assert!(matches!(parse(&words("tempo 128")), Ok(CtlCommand::Press(ControlCommand::Tempo { .. }))));
        assert!(parse(&words("log --since x")).unwrap_err().contains("not a sequence number"));
        assert!(parse(&words("frobnicate")).is_err());
        assert!(parse(&words("quit")).unwrap_err().contains("terminal command"));
        assert!(parse(&[]).is_err());
    }
}
