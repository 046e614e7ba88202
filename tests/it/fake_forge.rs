//! A fake forge: a real HTTP server holding repositories, issues, comments, labels, pull
//! requests and permissions in memory, answering GitHub's or Gitea's REST API from that state.
