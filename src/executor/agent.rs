//! The agent process: the Claude Code CLI (or a stand-in) run in a worktree.
