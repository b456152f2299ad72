//! Engine config types (filled by the engine issue).
