//! `application/x-www-form-urlencoded` parsing (token request bodies, query strings, Basic
//! credentials), small enough to keep the emulator free of another dependency.

/// The `name=value` pairs of a form body or query string, decoded, in order.
pub(crate) fn parse(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|byte| *byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|byte| *byte == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// Decodes `+` as a space and `%XX` escapes; malformed escapes are kept as written.
pub(crate) fn decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        match input[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input
                    .get(index + 1..index + 3)
                    .and_then(|digits| std::str::from_utf8(digits).ok())
                    .and_then(|digits| u8::from_str_radix(digits, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    index += 2;
                } else {
                    out.push(b'%');
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_split_and_decoded() {
        assert_eq!(
            parse(b"grant_type=client_credentials&scope=https%3A%2F%2Fmonitor.azure.com%2F.default&client_secret=a+b%7E%zz&flag"),
            vec![
                ("grant_type".to_string(), "client_credentials".to_string()),
                ("scope".to_string(), "https://monitor.azure.com/.default".to_string()),
                ("client_secret".to_string(), "a b~%zz".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }
}
