//! `loophole-node devices`: the audio hosts and the output and input devices cpal sees (each
//! line says `output` or `input`), with their default configurations, then the MIDI inputs and
//! outputs (or `MIDI: not available (reason)`). Says so
//! plainly when there are none (and exits 0: having no device is a normal state for a server,
//! which plays on the null device).
//!
//! Thread: Main thread.

use cpal::traits::{DeviceTrait, HostTrait};

use crate::say;

/// Prints the device list. Thread: main thread.
pub fn run() -> anyhow::Result<()> {
    let _alsa = crate::audio::AlsaMessages::collect();
    let mut outputs = 0usize;
    let mut inputs = 0usize;
    let hosts = cpal::available_hosts();
    if hosts.is_empty() {
        say(format_args!("audio: no audio host is available"));
    }
    for host_id in hosts {
        let host = match cpal::host_from_id(host_id) {
            Ok(host) => host,
            Err(e) => {
                say(format_args!("host {}: not available ({e})", host_id.name()));
                continue;
            }
        };
        say(format_args!("host {}", host_id.name()));
        let default_id = host.default_output_device().and_then(|d| d.id().ok());
        let devices = match host.output_devices() {
            Ok(devices) => devices,
            Err(e) => {
                say(format_args!("  cannot list output devices ({e})"));
                continue;
            }
        };
        for device in devices {
            let id = device.id().map(|id| id.to_string()).unwrap_or_else(|_| "?".into());
            let is_default = default_id.as_ref().is_some_and(|d| device.id().ok().as_ref() == Some(d));
            let name = crate::audio::device::device_label(&device);
            let config = match device.default_output_config() {
                Ok(c) => format!("{} Hz, {} channels, {}", c.sample_rate(), c.channels(), c.sample_format()),
                Err(e) => format!("unusable: {:?}", e.kind()),
            };
            if !config.starts_with("unusable") {
                outputs += 1;
            }
            say(format_args!("  output {name} [{id}]{}: {config}", if is_default { " (default)" } else { "" }));
        }
        inputs += list_inputs(&host);
    }
    if outputs == 0 {
        say(format_args!(
            "audio: no usable output device; `play` and `demo` will play on the null device (paced in real time) and write what they play to a WAV file"
        ));
    }
    if inputs == 0 {
        say(format_args!(
            "audio: no usable input device; `--input` takes the null input: `silence`, `file:PATH.wav`, `loopback[:MS]`"
        ));
    }
    for line in crate::midi::rig::device_lines(&mut crate::midi::MidirBackend::new("loophole")) {
        say(format_args!("{line}"));
    }
    Ok(())
}

/// Prints a host's input devices (`  input NAME [ID] (default): CONFIG`); returns how many are
/// usable.
fn list_inputs(host: &cpal::Host) -> usize {
    let default_id = host.default_input_device().and_then(|d| d.id().ok());
    let devices = match host.input_devices() {
        Ok(devices) => devices,
        Err(e) => {
            say(format_args!("  cannot list input devices ({e})"));
            return 0;
        }
    };
    let mut usable = 0;
    for device in devices {
        let id = device.id().map(|id| id.to_string()).unwrap_or_else(|_| "?".into());
        let is_default = default_id.as_ref().is_some_and(|d| device.id().ok().as_ref() == Some(d));
        let name = crate::audio::device::device_label(&device);
        let config = match device.default_input_config() {
            Ok(c) => {
                usable += 1;
                format!("{} Hz, {} channels, {}", c.sample_rate(), c.channels(), c.sample_format())
            }
            Err(e) => format!("unusable: {:?}", e.kind()),
        };
        say(format_args!("  input {name} [{id}]{}: {config}", if is_default { " (default)" } else { "" }));
    }
    usable
}
