//! Python's `repr(float)`, and how `json.dumps` spells floats.

/// `repr(f)`: the shortest digits that read back as the same number; in
/// positional form (always with a `.`) for decimal exponents -4..16, else in
/// scientific form with a signed exponent of at least two digits
/// (`1e-05`, `1e+16`); `nan`, `inf`, `-inf`.
pub fn repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    finite(f)
}

/// A float as `json.dumps` writes it: [`repr`] for finite numbers,
/// `NaN`, `Infinity` and `-Infinity` otherwise (not valid JSON, but what
/// Python writes).
pub fn json(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    finite(f)
}

fn finite(f: f64) -> String {
    // Rust's `{:e}` gives the shortest round-trip digits: `1.2345e-7`, `1e20`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("Rust's {:e} float format always contains an 'e'");
    let exp: i32 = exp
        .parse()
        .expect("Rust's {:e} float format has an integer exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(if f.is_sign_negative() { "-" } else { "" });
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat(point.unsigned_abs() as usize));
            out.push_str(&digits);
        } else {
            let point = point.unsigned_abs() as usize;
            if digits.len() > point {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            } else {
                out.push_str(&digits);
                out.push_str(&"0".repeat(point - digits.len()));
                out.push_str(".0");
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", exp.unsigned_abs()));
    }
    out
}
