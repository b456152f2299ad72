//! `/_front/*` on the front's port: faults and settings. TODO(helper A).
