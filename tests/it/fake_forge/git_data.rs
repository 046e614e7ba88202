//! GitHub's Git database API over the fake repository's bare git repository: blobs, trees
//! and commits written with git2, refs read, created and moved. Commits made without an
//! author, committer or signature are the token's account's, and GitHub signs them:
//! the fake remembers their shas (`FakeRepo::signed_commits`).

use git2::{FileMode, Oid, Repository};
use serde_json::{Value, json};

use super::{Answer, Exchange, FakeRepo, Reply, open_git};

impl Exchange<'_> {
    fn git(&self, repo: &FakeRepo) -> Result<Repository, Reply> {
        open_git(&repo.clone_url).ok_or_else(|| self.ctx.error(409, "Git Repository is empty."))
    }

    fn created(&self, repo: &FakeRepo, kind: &str, oid: Oid) -> Reply {
        Reply::json(
            201,
            json!({ "sha": oid.to_string(), "url": format!("{}/git/{kind}/{oid}", self.ctx.repo_api(repo)) }),
        )
    }

    /// `POST /repos/{o}/{r}/git/blobs {content, encoding}`.
    pub(super) fn create_blob(&self, repo: &FakeRepo) -> Answer {
        let content = self.required("content")?;
        let bytes = match self.request.field("encoding").unwrap_or("utf-8") {
            "base64" => openssl::base64::decode_block(&content.replace('\n', ""))
                .map_err(|_| self.ctx.error(422, "Invalid request.\n\nThe content is not valid Base64."))?,
            "utf-8" => content.as_bytes().to_vec(),
            other => {
                return Err(self
                    .ctx
                    .error(422, &format!("Invalid request.\n\nencoding {other:?} is not supported.")));
            }
        };
        let oid = self.git(repo)?.blob(&bytes).map_err(|e| self.ctx.error(500, &e.to_string()))?;
        Ok(self.created(repo, "blobs", oid))
    }

    /// `POST /repos/{o}/{r}/git/trees {base_tree, tree: [{path, mode, type, sha|content}]}`;
    /// a `null` sha removes the path, `content` is written as a blob.
    pub(super) fn create_tree(&self, repo: &FakeRepo) -> Answer {
        let git = self.git(repo)?;
        let invalid = |what: &str| self.ctx.error(422, &format!("Invalid request.\n\n{what}"));
        let base = match self.request.field("base_tree") {
            Some(sha) => Some(
                Oid::from_str(sha)
                    .ok()
                    .and_then(|oid| git.find_tree(oid).ok())
                    .ok_or_else(|| invalid("base_tree is not a valid tree"))?,
            ),
            None => None,
        };
        let empty;
        let base = match base {
            Some(tree) => tree,
            None => {
                empty = git.treebuilder(None).and_then(|b| b.write()).map_err(|e| invalid(&e.to_string()))?;
                git.find_tree(empty).map_err(|e| invalid(&e.to_string()))?
            }
        };
        let entries = self
            .request
            .body
            .get("tree")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("tree wasn't supplied"))?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for entry in entries {
            let path = entry["path"].as_str().ok_or_else(|| invalid("tree.path wasn't supplied"))?;
            let mode = entry["mode"]
                .as_str()
                .and_then(file_mode)
                .ok_or_else(|| invalid("tree.mode is not valid"))?;
            if let Some(text) = entry.get("content").and_then(Value::as_str) {
                if entry.get("sha").is_some() {
                    return Err(invalid("tree entries take either sha or content"));
                }
                let oid = git.blob(text.as_bytes()).map_err(|e| invalid(&e.to_string()))?;
                update.upsert(path, oid, mode);
                continue;
            }
            match entry["sha"].as_str() {
                None if entry["sha"].is_null() => {
                    update.remove(path);
                }
                None => return Err(invalid("tree.sha is not valid")),
                Some(sha) => {
                    let oid = Oid::from_str(sha).map_err(|_| invalid("tree.sha is not valid"))?;
                    if mode != FileMode::Commit && git.find_object(oid, None).is_err() {
                        return Err(invalid(&format!("tree.sha {sha} is not a valid blob")));
                    }
                    update.upsert(path, oid, mode);
                }
            }
        }
        let oid = update.create_updated(&git, &base).map_err(|e| invalid(&e.to_string()))?;
        Ok(self.created(repo, "trees", oid))
    }

    /// `POST /repos/{o}/{r}/git/commits {message, tree, parents}`: written as the token's
    /// account; signed (remembered) when no author, committer nor signature was given.
    pub(super) fn create_commit(&self, repo: &mut FakeRepo) -> Answer {
        let git = self.git(repo)?;
        let invalid = |what: &str| self.ctx.error(422, &format!("Invalid request.\n\n{what}"));
        let message = self.required("message")?;
        let tree = self.required("tree")?;
        let tree = Oid::from_str(tree)
            .ok()
            .and_then(|o| git.find_tree(o).ok())
            .ok_or_else(|| invalid("tree is not a valid tree"))?;
        let mut parents = Vec::new();
        for parent in self.request.body.get("parents").and_then(Value::as_array).into_iter().flatten() {
            let commit =
                parent.as_str().and_then(|s| Oid::from_str(s).ok()).and_then(|o| git.find_commit(o).ok());
            parents.push(commit.ok_or_else(|| invalid("parents is not a list of commits"))?);
        }
        let bot = &self.ctx.bot;
        let signature = git2::Signature::now(bot, &format!("1+{bot}@users.noreply.github.com"))
            .map_err(|e| invalid(&e.to_string()))?;
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        let oid = git
            .commit(None, &signature, &signature, message, &tree, &parents)
            .map_err(|e| invalid(&e.to_string()))?;
        let body = &self.request.body;
        let signed =
            ["author", "committer", "signature"].iter().all(|k| body.get(*k).is_none_or(Value::is_null));
        if signed {
            repo.signed_commits.insert(oid.to_string());
        }
        let mut reply = self.created(repo, "commits", oid);
        if let Some(body) = reply.body.as_mut() {
            body["verification"] =
                json!({ "verified": signed, "reason": if signed { "valid" } else { "unsigned" } });
        }
        Ok(reply)
    }

    /// `GET /repos/{o}/{r}/git/ref/{ref}`.
    pub(super) fn git_ref(&self, repo: &FakeRepo, name: &str) -> Answer {
        let git = self.git(repo)?;
        let full = format!("refs/{name}");
        let target =
            git.find_reference(&full).ok().and_then(|r| r.target()).ok_or_else(|| self.ctx.not_found())?;
        Ok(Reply::ok(ref_json(self, repo, &full, target)))
    }

    /// `POST /repos/{o}/{r}/git/refs {ref, sha}`.
    pub(super) fn create_ref(&self, repo: &FakeRepo) -> Answer {
        let git = self.git(repo)?;
        let full = self.required("ref")?;
        let oid = self.commit_sha(&git)?;
        if !full.starts_with("refs/") || full.matches('/').count() < 2 {
            return Err(self.ctx.error(422, "Reference name is not valid"));
        }
        if git.find_reference(full).is_ok() {
            return Err(self.ctx.error(422, "Reference already exists"));
        }
        git.reference(full, oid, false, "fake GitHub: git/refs")
            .map_err(|e| self.ctx.error(422, &e.to_string()))?;
        Ok(Reply::json(201, ref_json(self, repo, full, oid)))
    }

    /// `PATCH /repos/{o}/{r}/git/refs/{ref} {sha, force}`: a fast-forward unless forced.
    pub(super) fn update_ref(&self, repo: &FakeRepo, name: &str) -> Answer {
        let git = self.git(repo)?;
        let full = format!("refs/{name}");
        let oid = self.commit_sha(&git)?;
        let current = git.find_reference(&full).ok().and_then(|r| r.target());
        let Some(current) = current else { return Err(self.ctx.error(422, "Reference does not exist")) };
        let force = self.request.body.get("force").and_then(Value::as_bool).unwrap_or(false);
        let fast_forward = current == oid || git.graph_descendant_of(oid, current).unwrap_or(false);
        if !force && !fast_forward {
            return Err(self.ctx.error(422, "Update is not a fast forward"));
        }
        git.reference(&full, oid, true, "fake GitHub: git/refs")
            .map_err(|e| self.ctx.error(422, &e.to_string()))?;
        Ok(Reply::ok(ref_json(self, repo, &full, oid)))
    }

    fn commit_sha(&self, git: &Repository) -> Result<Oid, Reply> {
        let sha = self.required("sha")?;
        Oid::from_str(sha)
            .ok()
            .filter(|oid| git.find_commit(*oid).is_ok())
            .ok_or_else(|| self.ctx.error(422, "Object does not exist"))
    }
}

fn ref_json(exchange: &Exchange<'_>, repo: &FakeRepo, full: &str, oid: Oid) -> Value {
    let api = exchange.ctx.repo_api(repo);
    json!({
        "ref": full,
        "node_id": "REF_fake",
        "url": format!("{api}/git/{full}"),
        "object": { "type": "commit", "sha": oid.to_string(), "url": format!("{api}/git/commits/{oid}") },
    })
}

fn file_mode(mode: &str) -> Option<FileMode> {
    Some(match mode {
        "100644" => FileMode::Blob,
        "100755" => FileMode::BlobExecutable,
        "120000" => FileMode::Link,
        "160000" => FileMode::Commit,
        "040000" => FileMode::Tree,
        _ => return None,
    })
}
