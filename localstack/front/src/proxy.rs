//! The API front: hyper server, LocalStack behind. TODO(helper A).

use std::sync::Arc;

pub async fn serve(front: Arc<crate::run::Front>) -> anyhow::Result<()> {
    let _ = front;
    std::future::pending::<()>().await;
    Ok(())
}
