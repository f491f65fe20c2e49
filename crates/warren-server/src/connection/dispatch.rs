//! Frames in: decoding whatever the read buffer holds, `connection.*` methods after the
//! handshake, channel methods and content routed to their channel (opening and closing
//! channels with RabbitMQ's rules), and events from queues (deliveries, cancellations).

use super::*;

impl Connection {
    /// Handles every complete frame in the input buffer.
    pub(super) fn process_input(&mut self, inbuf: &mut BytesMut) -> Next {
        loop {
            let frame = match decode_frame(inbuf, self.ctx.frame_max) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Next::Continue,
                Err(e) => {
                    // Framing is lost: nothing after this can be parsed. Tell the client why
                    // and end the connection once that is written.
                    let err = AmqpError::connection(FRAME_ERROR, e.to_string());
                    inbuf.clear();
                    write_connection_close(&mut self.ctx.out, &err);
                    return Next::Stop(End::Error(err));
                }
            };
            if frame.payload.len() >= LARGE_FRAME {
                self.large_frames = true;
            }
            match self.handle_frame(frame) {
                Ok(Next::Continue) => {}
                Ok(stop) => return stop,
                Err(e) => {
                    if self.closing_since.is_none() {
                        self.start_close(e);
                    }
                }
            }
        }
    }

    pub(super) fn start_close(&mut self, e: AmqpError) {
        warn!(connection = self.ctx.id, code = e.code, text = %e.text, class_id = e.class_id, method_id = e.method_id, "closing connection with error");
        write_connection_close(&mut self.ctx.out, &e);
        self.release_channels();
        self.closing_since = Some((Instant::now(), e));
    }

    pub(super) fn handle_frame(&mut self, frame: RawFrame) -> Result<Next, AmqpError> {
        if let Some((_, err)) = &self.closing_since {
            // After connection.close only close/close-ok matter.
            if frame.frame_type == FRAME_METHOD && frame.channel == 0 {
                match Method::decode(&frame.payload) {
                    Ok(Method::ConnectionCloseOk(_)) => {
                        return Ok(Next::Stop(End::Error(err.clone())))
                    }
                    // Crossing closes: the client now waits for our close-ok and closes
                    // the socket itself, as after any close it starts (the error that
                    // started ours is logged already).
                    Ok(Method::ConnectionClose(_)) => {
                        encode_method_frame(&mut self.ctx.out, 0, &ConnectionCloseOk {}.into());
                        return Ok(Next::Stop(End::ClientClosed));
                    }
                    _ => {}
                }
            }
            return Ok(Next::Continue);
        }
        match frame.frame_type {
            FRAME_HEARTBEAT => {
                if frame.channel != 0 {
                    return Err(AmqpError::connection(
                        UNEXPECTED_FRAME,
                        format!("heartbeat frame on channel {}", frame.channel),
                    ));
                }
                if !frame.payload.is_empty() {
                    // RabbitMQ 3.10: 501 "type 8, all octets = <<"xy">>: unknown_frame",
                    // naming no method (0, 0).
                    return Err(AmqpError::connection(
                        FRAME_ERROR,
                        format!(
                            "type 8, all octets = {}: unknown_frame",
                            erlang_binary(&frame.payload)
                        ),
                    ));
                }
                Ok(Next::Continue)
            }
            FRAME_METHOD => {
                let method = match Method::decode_strict(&frame.payload) {
                    Ok(m) => m,
                    Err(DecodeError::UnknownMethod {
                        class_id,
                        method_id,
                    }) => {
                        // RabbitMQ drops such a peer without a close frame: it cannot be
                        // speaking AMQP 0-9-1.
                        return Ok(Next::Stop(End::Dropped(format!(
                            "unknown method {class_id}.{method_id}"
                        ))));
                    }
                    Err(e) => {
                        let ids = |at: usize| {
                            frame
                                .payload
                                .get(at..at + 2)
                                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
                        };
                        // RabbitMQ 3.10: 501 "cannot decode <<the argument bytes>>", trailing
                        // bytes after the last argument included.
                        debug!(connection = self.ctx.id, error = %e, "undecodable method frame");
                        let args = frame.payload.get(4..).unwrap_or_default();
                        return Err(AmqpError::connection(
                            FRAME_ERROR,
                            format!("cannot decode {}", erlang_binary(args)),
                        )
                        .on(ids(0), ids(2)));
                    }
                };
                if frame.channel == 0 {
                    self.connection_method(method)
                } else {
                    self.channel_method(frame.channel, method)?;
                    Ok(Next::Continue)
                }
            }
            FRAME_HEADER | FRAME_BODY => {
                self.channel_content(frame)?;
                Ok(Next::Continue)
            }
            other => Err(AmqpError::connection(
                FRAME_ERROR,
                format!("unknown frame type {other}"),
            )),
        }
    }

    pub(super) fn connection_method(&mut self, method: Method) -> Result<Next, AmqpError> {
        match method {
            Method::ConnectionClose(m) => {
                info!(connection = self.ctx.id, code = m.reply_code, text = %m.reply_text, "client closed the connection");
                encode_method_frame(&mut self.ctx.out, 0, &ConnectionCloseOk {}.into());
                self.release_channels();
                Ok(Next::Stop(End::ClientClosed))
            }
            // RabbitMQ 3.10: an unsolicited close-ok is 504 on 10.51.
            Method::ConnectionCloseOk(_) => Err(AmqpError::connection(
                CHANNEL_ERROR,
                "unexpected method in connection state running",
            )
            .on(10, 51)),
            Method::ConnectionUpdateSecret(_) => {
                encode_method_frame(&mut self.ctx.out, 0, &ConnectionUpdateSecretOk {}.into());
                Ok(Next::Continue)
            }
            Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_) => Ok(Next::Continue),
            other => Err(AmqpError::connection(
                CHANNEL_ERROR,
                "unexpected method in connection state running",
            )
            .on(other.class_id(), other.method_id())),
        }
    }

    pub(super) fn channel_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        let open_channels = self.channels.len();
        let Some(channel) = self.channels.get_mut(&ch) else {
            if let Method::ChannelOpen(_) = method {
                // As in RabbitMQ, channel_max bounds how many channels are open, not their ids.
                if open_channels >= usize::from(self.channel_max) {
                    return Err(AmqpError::connection(
                        NOT_ALLOWED,
                        format!(
                            "number of channels opened ({open_channels}) has reached the negotiated channel_max ({})",
                            self.channel_max
                        ),
                    ));
                }
                // RabbitMQ 3.10: a user's max-channels is a 530 connection error (0, 0).
                self.ctx
                    .broker
                    .access()
                    .open_user_channel(&mut self.user_slot)?;
                #[cfg(test)]
                if ch == super::panic_tests::PANIC_CHANNEL {
                    panic!("test hook: the connection task panics");
                }
                let stats = self.registration.state().open_channel(ch);
                self.channels.insert(ch, Channel::new(ch, stats));
                encode_method_frame(
                    &mut self.ctx.out,
                    ch,
                    &ChannelOpenOk {
                        reserved_1: Bytes::new(),
                    }
                    .into(),
                );
                debug!(connection = self.ctx.id, channel = ch, "channel opened");
                return Ok(());
            }
            return Err(
                AmqpError::connection(CHANNEL_ERROR, "expected 'channel.open'")
                    .on(class_id, method_id),
            );
        };
        if channel.state == ChannelState::Closing {
            match method {
                Method::ChannelCloseOk(_) => self.remove_channel(ch),
                // RabbitMQ 3.10: closes that cross are answered with close-ok, and the
                // channel still waits for the close-ok of its own close (until then a
                // `channel.open` of it is "second 'channel.open' seen").
                Method::ChannelClose(_) => {
                    encode_method_frame(&mut self.ctx.out, ch, &ChannelCloseOk {}.into());
                }
                Method::ChannelOpen(_) => {
                    return Err(
                        AmqpError::connection(CHANNEL_ERROR, "second 'channel.open' seen")
                            .on(class_id, method_id),
                    )
                }
                _ => {}
            }
            return Ok(());
        }
        if let Some(e) = channel.content_interrupted() {
            return Err(e);
        }
        match method {
            Method::ChannelOpen(_) => Err(AmqpError::connection(
                CHANNEL_ERROR,
                "second 'channel.open' seen",
            )
            .on(class_id, method_id)),
            Method::ChannelClose(m) => {
                debug!(connection = self.ctx.id, channel = ch, code = m.reply_code, text = %m.reply_text, "client closed channel");
                channel.release(&mut self.ctx);
                encode_method_frame(&mut self.ctx.out, ch, &ChannelCloseOk {}.into());
                self.remove_channel(ch);
                Ok(())
            }
            // RabbitMQ 3.10: a close-ok on a channel that is not closing is 503 on 20.41.
            Method::ChannelCloseOk(_) => Err(AmqpError::connection(
                COMMAND_INVALID,
                "unimplemented method",
            )
            .on(class_id, method_id)),
            method => {
                let result = channel.handle_method(&mut self.ctx, method);
                self.after_channel_op(ch, result)
            }
        }
    }

    pub(super) fn channel_content(&mut self, frame: RawFrame) -> Result<(), AmqpError> {
        let ch = frame.channel;
        if ch == 0 {
            return Err(AmqpError::connection(
                CHANNEL_ERROR,
                "content frame on channel 0",
            ));
        }
        let Some(channel) = self.channels.get_mut(&ch) else {
            return Err(AmqpError::connection(
                CHANNEL_ERROR,
                "expected 'channel.open'",
            ));
        };
        if channel.state == ChannelState::Closing {
            return Ok(());
        }
        let result = if frame.frame_type == FRAME_HEADER {
            channel.handle_header(&mut self.ctx, frame.payload)
        } else {
            channel.handle_body(&mut self.ctx, frame.payload)
        };
        self.after_channel_op(ch, result)
    }

    /// A channel is gone: out of the table and out of its user's channel count.
    fn remove_channel(&mut self, ch: u16) {
        if let Some(channel) = self.channels.remove(&ch) {
            self.ctx
                .vhost
                .absorb_channel_counts(&channel.stats.counts());
            self.registration.state().close_channel(ch);
            self.ctx
                .broker
                .access()
                .close_user_channel(&mut self.user_slot);
        }
    }

    /// Closes (406) every channel with a delivery unacknowledged for longer than `timeout`.
    pub(super) fn check_ack_timeouts(&mut self, timeout: Duration) {
        let now = std::time::Instant::now();
        let expired: Vec<(u16, AmqpError)> = self
            .channels
            .iter_mut()
            .filter(|(_, c)| c.state == ChannelState::Open)
            .filter_map(|(&id, c)| c.check_ack_timeout(now, timeout).err().map(|e| (id, e)))
            .collect();
        for (ch, e) in expired {
            let _ = self.after_channel_op(ch, Err(e));
        }
    }

    /// Turns a channel error into `channel.close`; passes connection errors up.
    pub(super) fn after_channel_op(
        &mut self,
        ch: u16,
        result: Result<(), AmqpError>,
    ) -> Result<(), AmqpError> {
        if self.confirm_dirty.last() != Some(&ch) {
            self.confirm_dirty.push(ch);
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.scope == Scope::Channel => {
                let synced = self.synced_generation();
                if let Some(channel) = self.channels.get_mut(&ch) {
                    info!(connection = self.ctx.id, channel = ch, code = e.code, text = %e.text, "closing channel with error");
                    channel.flush_confirms(&mut self.ctx, synced);
                    encode_method_frame(
                        &mut self.ctx.out,
                        ch,
                        &Method::ChannelClose(ChannelClose {
                            reply_code: e.code,
                            reply_text: e.text,
                            class_id: e.class_id,
                            method_id: e.method_id,
                        }),
                    );
                    channel.release(&mut self.ctx);
                    channel.state = ChannelState::Closing;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn handle_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Deliver(d) => {
                self.sink
                    .pending_bytes
                    .fetch_sub(d.msg.body.len() + DELIVERY_OVERHEAD, Ordering::Relaxed);
                match self.channels.get_mut(&d.channel) {
                    Some(channel) => channel.deliver(&mut self.ctx, d),
                    None => d.give_back(),
                }
            }
            ConnEvent::Cancelled { channel, tag } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.consumer_cancelled(&mut self.ctx, &tag);
                }
            }
            ConnEvent::ForceClose(reason) => {
                if self.closing_since.is_none() {
                    self.start_close(AmqpError::connection(CONNECTION_FORCED, reason));
                }
            }
        }
    }
}

/// A byte string as Erlang prints a binary in RabbitMQ's error texts: `<<"text">>` when
/// every byte is printable ASCII, else `<<1,2,3>>`.
fn erlang_binary(bytes: &[u8]) -> String {
    if !bytes.is_empty() && bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        let text: String = bytes
            .iter()
            .map(|&b| match b {
                b'"' => "\\\"".to_string(),
                b'\\' => "\\\\".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        return format!("<<\"{text}\">>");
    }
    let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("<<{}>>", list.join(","))
}

#[cfg(test)]
mod tests {
    #[test]
    fn binaries_print_as_erlang_does() {
        assert_eq!(super::erlang_binary(b"xy"), "<<\"xy\">>");
        assert_eq!(super::erlang_binary(&[0, 74, 85]), "<<0,74,85>>");
        assert_eq!(super::erlang_binary(b""), "<<>>");
    }
}
