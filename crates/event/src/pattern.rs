//! Glob patterns over schema, table and column names (`*` any run of characters, `?` one
//! character), shared by the reader's table filter and the masking rules.

/// Whether `text` matches `pattern`, in time linear in their lengths times the number of `*`s
/// (the usual greedy match that backtracks only to the last `*`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    pi = star_p + 1;
                    ti = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("order*", "orders"));
        assert!(glob_match("*", ""));
        assert!(glob_match("?sers", "users"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(!glob_match("order", "orders"));
        assert!(glob_match("ü*", "über"));
        // Many stars against a long near-miss stays fast.
        let text = "a".repeat(5000);
        assert!(!glob_match("*a*a*a*a*a*a*a*a*b", &text));
    }
}
