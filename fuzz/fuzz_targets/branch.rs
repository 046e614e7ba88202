//! Branch names: any issue title gives a valid git reference under the prefix.
#![no_main]

use forgehand::executor::workspace::branch_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u32, &str)| {
    let (number, title) = input;
    let branch = branch_name("forgehand/", number, title);
    assert!(branch.starts_with("forgehand/issue-"), "{branch:?}");
    assert!(git2::Reference::is_valid_name(&format!("refs/heads/{branch}")), "{branch:?} is not a valid ref");
    assert!(branch.len() <= 255, "{} bytes", branch.len());
});
