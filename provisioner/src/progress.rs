//! Progress for long work: a bar on a terminal, one plain line per step otherwise.
//! Always on stderr, so `--output json` keeps stdout clean.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::action::{Action, Change};

pub struct Progress {
    bar: Mutex<Option<ProgressBar>>,
    tty: bool,
    quiet: bool,
    verb: &'static str,
}

impl Progress {
    pub fn new(verb: &'static str, quiet: bool) -> Progress {
        Progress { bar: Mutex::new(None), tty: std::io::stderr().is_terminal(), quiet, verb }
    }

    pub fn start(&self, total: u64) {
        if self.quiet || !self.tty || total == 0 {
            return;
        }
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {wide_msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_prefix(self.verb);
        *self.bar.lock().expect("progress lock") = Some(b);
    }

    pub fn inc(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").as_ref() {
            b.inc(1);
        }
    }

    pub fn step_done(&self, a: &Action) {
        let line = format!("{} {} [{}]", word(a.change()), a.describe(), a.scope());
        self.line(&line);
    }

    pub fn step_failed(&self, a: &Action, err: &str) {
        self.line(&format!("FAILED {} [{}]: {err}", a.describe(), a.scope()));
    }

    pub fn note(&self, msg: &str) {
        if !self.quiet {
            match self.bar.lock().expect("progress lock").as_ref() {
                Some(b) => b.println(msg),
                None => eprintln!("{msg}"),
            }
        }
    }

    fn line(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match self.bar.lock().expect("progress lock").as_ref() {
            Some(b) => {
                b.inc(1);
                b.set_message(msg.to_string());
            }
            None => eprintln!("{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
    }
}

fn word(c: Change) -> &'static str {
    match c {
        Change::Create => "created",
        Change::Update => "updated",
        Change::Delete => "deleted",
    }
}
