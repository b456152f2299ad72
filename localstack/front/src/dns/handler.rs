//! Answers each DNS query from the latest zones snapshot and the checkers' health.

use crate::checkers::Checkers;
use crate::zones::Zones;
use hickory_proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use std::sync::Arc;

#[derive(Clone)]
pub struct Handler {
    pub zones: Arc<Zones>,
    pub checkers: Arc<Checkers>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        let answer = self.answer(request).unwrap_or_else(|| {
            let rcode = if request.op_code() == OpCode::Query { ResponseCode::FormErr } else { ResponseCode::NotImp };
            crate::zones::Answer { rcode, authoritative: false, answers: vec![], authority: vec![] }
        });
        header.set_authoritative(answer.authoritative);
        header.set_response_code(answer.rcode);
        let response = builder.build(header, answer.answers.iter(), answer.authority.iter(), std::iter::empty(), std::iter::empty());
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS answer");
                ResponseInfo::from(header)
            }
        }
    }
}

impl Handler {
    /// None for anything but a well-formed standard query.
    fn answer(&self, request: &Request) -> Option<crate::zones::Answer> {
        if request.op_code() != OpCode::Query || request.message_type() != MessageType::Query {
            return None;
        }
        let info = request.request_info().ok()?;
        let qname = info.query.name().to_string();
        let snap = self.zones.snapshot();
        Some(crate::zones::answer(&snap, &qname, info.query.query_type(), |id| self.checkers.healthy(id)))
    }
}
