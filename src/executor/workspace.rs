//! Git workspaces (git2): one bare mirror per repository, one worktree per task.
