// Package rtmp speaks RTMP (Adobe RTMP specification 1.0, with the
// Enhanced RTMP video header): a Server that accepts publishers (OBS,
// FFmpeg, other encoders) and players, and a Client that publishes to a
// server (relay egress). Media crosses the package boundary in Tandem's
// vocabulary (media.Frame on the 90 kHz clock, media.AudioConfig,
// media.VideoConfig); FLV tag handling lives in uplink/flv, AMF0 in
// uplink/rtmp/amf0.
//
// # Server
//
// One goroutine per connection reads, answers and delivers to the Sink;
// writes (answers, acknowledgements, pings, players' media) go through one
// lock. A publisher's sequence is: handshake; connect (answered with
// Window Acknowledgement Size 2.5 MB, Set Peer Bandwidth 2.5 MB dynamic,
// Set Chunk Size and _result); releaseStream (_result), FCPublish
// (onFCPublish); createStream (_result with the stream id); publish
// (Authorize, then OnPublish, then Stream Begin and onStatus
// NetStream.Publish.Start); @setDataFrame/onMetaData; media. FCUnpublish,
// deleteStream and closeStream end it cleanly (OnClose(nil)). A refusal is
// an onStatus with level "error" after which the server half-closes and
// drains the connection for up to 2 s, so the client reads the reason
// before the connection goes.
//
// # Decisions where the specification leaves room
//
//   - Handshake: plain (spec §5.2). S1 has a zero version field, S2 echoes
//     C1; C2 is read but not compared with S1 (digest-handshake clients
//     answer differently). FFmpeg and librtmp (OBS) publishers accept this.
//   - Chunk headers read: a type 3 chunk that starts a message adds the
//     stored timestamp delta; after a type 0 header that delta is the type
//     0 timestamp (as FFmpeg does; the spec defines none). Deltas and
//     timestamps add modulo 2^32.
//   - Extended timestamps on type 3 chunks: the spec says a type 3 chunk
//     carries the 4-byte extended timestamp when the last type 0/1/2 header
//     of its chunk stream had one. The writer always sends it; the reader
//     consumes the 4 bytes only when they equal the stored value, because
//     some senders omit them.
//   - Chunk headers written: a message starts with type 0, or type 1/2
//     when the message stream is the same and the timestamp moved forward
//     (less than 2^31 ms, modulo 2^32: the wrap is a small step); type 3
//     only for continuation chunks.
//   - A chunk stream's first chunk must have a type 0 header; a type 0/1/2
//     header on a chunk stream whose message is incomplete is an error
//     (the spec has no interleaving within a chunk stream; Abort Message is
//     the way to drop a message).
//   - Limits: MaxMessageSize (default 16 MiB, which the 24-bit length
//     field caps anyway), 1024 chunk streams, 32 incomplete messages and
//     2 × MaxMessageSize + 1 MiB of buffered incomplete data per
//     connection; buffers grow as data arrives, never from a length field.
//     Set Chunk Size accepts 1 to 2^31−1.
//   - Acknowledgements: each end acknowledges every window of bytes it
//     receives, the window being the peer's Window Acknowledgement Size,
//     or 2.5 MB until the peer sends one. Set Peer Bandwidth is answered
//     with a Window Acknowledgement Size when the value differs from the
//     last one sent (§5.4.5); the limit type is not otherwise used.
//   - Ping: answered always. The server pings a peer it has heard nothing
//     from for IdleTimeout/3 and drops it after IdleTimeout.
//   - Commands: a missing transaction id reads as 0 (FFmpeg's server sends
//     a bare "onFCPublish"). Unknown commands are ignored (no _error: some
//     clients treat an _error for an optional call as fatal). publish or
//     play on a message stream the client did not create is accepted.
//   - Stream key: the publish name's query (x?key=abc) gives the key,
//     falling back to the connect app's query (live?key=abc).
//   - Data messages: undecodable ones are logged and ignored; onMetaData
//     (with or without @setDataFrame) goes to MetadataSink.
//   - Aggregate messages are split; their sub-messages' timestamps are
//     shifted so the first equals the aggregate's (§7.1.6).
//
// # Timestamps
//
// Ingest: DTS = RTMP ms × 90, unwrapped on one 64-bit timeline per
// publisher (each timestamp is taken as the nearest to the previous one
// modulo 2^32), PTS = DTS + composition time × 90. After 26.5 h the values
// exceed 33 bits: they are not masked.
//
// Egress (Client, Player): ms = ⌊(DTS − DTS₀)/90⌋ relative to the first
// frame sent; composition time = ⌊(PTS − DTS₀)/90⌋ − ms, so PTS and DTS are
// floored alike. A frame whose DTS is before the first frame's is sent at
// 0 (counted in Stats().Clamped).
//
// # Media
//
// Ingest accepts AAC (sound format 10) and H.264 (legacy codec id 7, or
// the E-RTMP ExVideoTagHeader with FourCC 'avc1': SequenceStart,
// CodedFrames, CodedFramesX, SequenceEnd, Metadata and command frames).
// Other codecs ('hvc1', 'av01', 'vp09', MP3, legacy non-AVC ids, enhanced
// audio, multitrack) end the session with an error naming the codec.
// H.264 frames are converted to Annex-B with 4-byte start codes; keyframes
// (IDR) without in-band SPS/PPS get those of the sequence header. Frame.Key
// follows the IDR slice, not the FLV frame type (mismatches are counted).
// Empty sequence headers (FFmpeg writes one when the encoder has no global
// header) are ignored, and Annex-B payloads inside AVC tags (what FFmpeg
// then sends) are accepted, the config coming from in-band SPS/PPS.
package rtmp
