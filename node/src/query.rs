//! Strict reading of URL query strings. The usual decoders (axum's `Query`, `form_urlencoded`)
//! turn a percent-encoded byte that is not UTF-8 into U+FFFD, which would quietly make a
//! different room name or prefix out of bad input; here such input is refused instead.

/// `text` with `+` as a space and `%XX` decoded; `None` if the result is not UTF-8. A `%` not
/// followed by two hex digits stays as it is, as browsers and `form_urlencoded` leave it.
pub fn decode(text: &str) -> Option<String> {
    let hex =
        |byte: Option<&u8>| byte.and_then(|b| char::from(*b).to_digit(16)).and_then(|d| u8::try_from(d).ok());
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(high * 16 + low);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// Whether every name and value of `query` is UTF-8 once decoded (`&`, `=` and `+` are ASCII, so
/// decoding the whole string checks them all).
pub fn is_utf8(query: &str) -> bool {
    decode(query).is_some()
}

/// The decoded values of every `key=` parameter, in order; `Err(raw value)` for one that is not
/// UTF-8 once decoded.
pub fn values<'a>(query: &'a str, key: &'a str) -> impl Iterator<Item = Result<String, &'a str>> + 'a {
    query.split('&').filter_map(move |pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(name).as_deref() == Some(key)).then(|| decode(value).ok_or(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_must_decode_to_utf8() {
        for good in
            ["", "prefix=doc%2F&limit=10", "prefix=%C3%A9", "cursor=caf%c3%a9", "a=%", "a=%zz", "b=+%2B"]
        {
            assert!(is_utf8(good), "{good}");
        }
        for bad in ["prefix=%FF", "prefix=%C3", "cursor=%C3&limit=1", "x=%ED%A0%80"] {
            assert!(!is_utf8(bad), "{bad}");
        }
    }

    #[test]
    fn values_are_decoded_in_order_and_bad_ones_named() {
        let query = "EIO=4&room=%2Fblog%2Fx&r%6Fom=a,b&other=1&room=a+b&room=%FF";
        let found: Vec<Result<String, &str>> = values(query, "room").collect();
        assert_eq!(found, [Ok("/blog/x".to_owned()), Ok("a,b".to_owned()), Ok("a b".to_owned()), Err("%FF")]);
    }
}
