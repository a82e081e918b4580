//! Encoding a `ReplyMsg`: within the client's maximum size (options dropped, largest optional
//! first, or carried on in `file`/`sname` with option 52), padded to BOOTP's 300 bytes.

#[cfg(test)]
use dhcproto::v4::Message;

use super::{
    BOOTP_MIN, EncodeError, FILE, IP_UDP_HEADERS, MIN_MAX_SIZE, OPT_END, OPT_OVERLOAD, OPTIONS,
    ReplyMsg, SNAME, Tlv, walk,
};

/// Encode a dhcproto message (see `encode_ordered`; no request order). Tests build replies
/// this way; the server builds `ReplyMsg`s directly.
#[cfg(test)]
pub fn encode(msg: &Message, max_size: usize) -> Result<Vec<u8>, EncodeError> {
    encode_message(msg, max_size, &[])
}

/// Encode a dhcproto message (see `encode_ordered`).
#[cfg(test)]
pub fn encode_message(
    msg: &Message,
    max_size: usize,
    order: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    encode_ordered(&ReplyMsg::from_message(msg)?, max_size, order)
}

/// Encode a reply, with the options in `order` (the client's parameter request list) written
/// right after 53 and 54, in that order; the others follow in numeric order, and 82 stays last.
///
/// `max_size` is a datagram size as in the client's option 57 (raised to 576 if smaller); the
/// DHCP message itself is kept within `max_size - 28` (IP and UDP headers), as dnsmasq does.
/// If the reply is too long, optional options are dropped, largest first; the options in
/// `ESSENTIAL` are never dropped. The message is zero-padded to BOOTP's 300 bytes.
pub fn encode_ordered(
    msg: &ReplyMsg,
    max_size: usize,
    order: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(MIN_MAX_SIZE);
    encode_into(msg, max_size, order, &mut out)?;
    Ok(out)
}

/// `encode_ordered` into `out` (cleared first), so a caller can reuse one buffer.
pub fn encode_into(
    msg: &ReplyMsg,
    max_size: usize,
    order: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    let limit = max_size.max(MIN_MAX_SIZE) - IP_UDP_HEADERS;
    let opts = &msg.opts;
    let whole = OPTIONS + opts.len_without(&[]) + 1;
    if whole > limit && encode_overloaded(msg, limit, order, out)? {
        return Ok(());
    }
    // Codes dropped to fit (none, nearly always).
    let mut dropped: Vec<u8> = Vec::new();
    let mut len = whole;
    loop {
        if len <= limit {
            break;
        }
        let Some(code) = opts.largest_optional(&dropped) else {
            return Err(EncodeError::TooLarge { len, limit });
        };
        tracing::debug!(code, limit, "dropping option to fit reply");
        dropped.push(code);
        len = OPTIONS + opts.len_without(&dropped) + 1;
    }
    msg.write_header(out)?;
    opts.write_ordered(out, order, &dropped);
    if out.len() < BOOTP_MIN {
        out.resize(BOOTP_MIN, 0);
    }
    Ok(())
}

/// Option overload (RFC 2131 section 4.1, RFC 2132 section 9.3): when the options do not fit in
/// `limit` and `file` and/or `sname` are unused, the options that do not fit in the options field
/// go on in `file` (then `sname`), each area ending with End, and option 52 says which areas
/// hold options. Every option is kept whole, in order; 82 stays in the options field. False
/// (and `out` unusable) when even that is too small: the caller then drops options instead.
fn encode_overloaded(
    msg: &ReplyMsg,
    limit: usize,
    order: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, EncodeError> {
    let mut all = Vec::new();
    msg.opts.write_ordered(&mut all, order, &[]);
    let mut tlvs = Vec::new();
    let _ = walk(&all, |t| tlvs.push(t), |_| true);
    // The options field: what is left of `limit` after the header, option 52 (3) and End (1).
    let main_room = limit.saturating_sub(OPTIONS + 3 + 1);
    // Room of each area: the options field, then `file` and `sname` when unused (End: 1 byte).
    let mut areas: Vec<(usize, u8, Vec<u8>)> = vec![(main_room, 0, Vec::new())];
    if msg.file.is_empty() {
        areas.push((FILE.len() - 1, 1, Vec::new()));
    }
    if msg.sname.is_empty() {
        areas.push((SNAME.len() - 1, 2, Vec::new()));
    }
    let len = |t: &Tlv| t.end - t.start + 2;
    // 53, 54 and 82 stay in the options field; the rest, largest first, go to the first area
    // with room (first fit decreasing); each area then holds its options in the usual order.
    let pinned = |t: &Tlv| matches!(t.code, 53 | 54 | 82);
    let mut fill = vec![0usize; areas.len()];
    let mut place = vec![0usize; tlvs.len()];
    fill[0] = tlvs.iter().filter(|t| pinned(t)).map(len).sum();
    let mut rest: Vec<usize> = (0..tlvs.len()).filter(|i| !pinned(&tlvs[*i])).collect();
    rest.sort_by_key(|i| std::cmp::Reverse(len(&tlvs[*i])));
    for i in rest {
        let n = len(&tlvs[i]);
        let Some(a) = (0..areas.len()).find(|a| fill[*a] + n <= areas[*a].0) else {
            return Ok(false);
        };
        fill[a] += n;
        place[i] = a;
    }
    if fill[0] > main_room {
        return Ok(false);
    }
    let mut used = 0u8;
    for (t, a) in tlvs.iter().zip(&place) {
        let area = &mut areas[*a];
        area.2
            .extend_from_slice(all.get(t.start - 2..t.end).unwrap_or_default());
        used |= area.1;
    }
    let mut header = msg.clone_header();
    for (_, bit, bytes) in &areas {
        if *bit != 0 && used & bit != 0 {
            let mut field = bytes.clone();
            field.push(OPT_END);
            if *bit == 1 {
                header.file = field;
            } else {
                header.sname = field;
            }
        }
    }
    header.write_header(out)?;
    if used != 0 {
        out.extend_from_slice(&[OPT_OVERLOAD, 1, used]);
    }
    out.extend_from_slice(&areas[0].2);
    out.push(OPT_END);
    if out.len() < BOOTP_MIN {
        out.resize(BOOTP_MIN, 0);
    }
    Ok(out.len() <= limit.max(BOOTP_MIN))
}

/// Where option `code` goes: 53, 54, then the codes of `order` in turn, then the rest (in
/// numeric order), then 82. (`ReplyOpts::write_ordered` ranks the same way with a table; the
/// tests check one against the other.)
#[cfg(test)]
pub(super) fn rank(code: u8, order: &[u8]) -> u64 {
    const LAST: u64 = 1 << 40;
    match code {
        53 => 0,
        54 => 1,
        82 => LAST,
        _ => order
            .iter()
            .position(|c| *c == code)
            .map_or(LAST - 1, |p| p as u64 + 2),
    }
}
