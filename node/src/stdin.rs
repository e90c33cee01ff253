//! The terminal as an input (`--stdin-commands`): a thread reads standard input a line at a
//! time, parses each with the engine's text form of control commands
//! ([`loophole_engine::control::text`]) and sends it to the inbox. Reader thread; blocks on
//! stdin only.

use loophole_engine::control::TextCommand;
use loophole_engine::control::text::parse;

use crate::inbox::{InboxSender, PressAt, Request, Source};

/// What a typed line asks for.
pub fn request(line: &str) -> Option<Request> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(match parse(line) {
        Ok(TextCommand::Control(command)) => Request::Command { source: Source::Stdin, at: PressAt::Now, command },
        Ok(TextCommand::Status) => Request::Status,
        Ok(TextCommand::Help) => Request::Help,
        Ok(TextCommand::Quit) => Request::Quit,
        Ok(TextCommand::Link(on)) => Request::Link(on),
        Err(why) => Request::Invalid { source: Source::Stdin, why: format!("'{line}': {why}") },
    })
}

/// Starts the thread that reads standard input into `inbox`. A failure to start is a warning:
/// the node plays on without the terminal.
pub fn spawn(inbox: InboxSender) {
    let spawned = std::thread::Builder::new().name("loophole-stdin".into()).spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if let Some(r) = request(&line)
                && !inbox.send(r)
            {
                break;
            }
        }
    });
    if let Err(e) = spawned {
        crate::warn_line(format_args!("loophole: warning: cannot read commands from stdin ({e})"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::control::ControlCommand;

    #[test]
    fn typed_lines_become_requests_and_mistakes_say_why() {
        assert_eq!(
            request("scene verse"),
            Some(Request::Command {
                source: Source::Stdin,
                at: PressAt::Now,
                command: ControlCommand::SceneTrigger { scene: "verse".into(), quantise: None, mode: None }
            })
        );
        assert_eq!(request("  "), None);
        assert_eq!(request("# a comment"), None);
        assert_eq!(request("status"), Some(Request::Status));
        match request("dance now") {
            Some(Request::Invalid { why, .. }) => assert!(why.contains("not a command"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
