//! TOML parse errors turned into field paths and words.
