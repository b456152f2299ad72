//! AWS's validations that LocalStack skips. TODO(helper A).
