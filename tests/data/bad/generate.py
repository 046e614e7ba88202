# Writes cases.json (run from this directory: python3 generate.py). Edit here, not in cases.json.
import json
cases=[]
def c(name, expect, **kw):
    d={"name":name}
    d.update(kw); d["expect_status"]=expect
    cases.append(d)

GH_LAB="github/issues_labeled.json"; GH_COM="github/issue_comment_issue.json"; GH_REV="github/pull_request_review.json"
GT_LAB="gitea/issues_label_updated.json"; GT_COM="gitea/issue_comment_issue.json"; GT_REV="gitea/pull_request_rejected.json"
SIGS={"github":"x-hub-signature-256","gitea":"x-gitea-signature"}
for forge, lab, com in [("github",GH_LAB,GH_COM),("gitea",GT_LAB,GT_COM)]:
    ev = {} if forge=="github" else {"event_type":"issue_label"}
    base=dict(forge=forge, body_file=lab, **ev)
    nontrig = {"/label":{"name":"other"}} if forge=="github" else {"/issue/labels":[{"name":"other"}]}
    # --- authentication and transport
    c(f"{forge}: no signature header", 401, **base, sign=False)
    c(f"{forge}: signed with a wrong secret", 401, **base, sign="wrong")
    c(f"{forge}: signature of another body", 401, **base, sign="other_body")
    c(f"{forge}: signed with an empty secret", 401, **base, sign="empty_secret")
    c(f"{forge}: signature header twice", 400, **base, sign="twice")
    c(f"{forge}: signature not hex", 401, **base, headers={SIGS[forge]:"sha256=zzzz"})
    c(f"{forge}: signature truncated", 401, **base, sign="truncated")
    c(f"{forge}: signature sha1 style", 401, **base, headers={SIGS[forge]:"sha1=0123456789abcdef0123456789abcdef01234567"})
    c(f"{forge}: signature all zeros", 401, **base, headers={SIGS[forge]:"0"*64})
    c(f"{forge}: signature bare sha256= prefix", 401, **base, headers={SIGS[forge]:"sha256="}, strip_other_signatures=True)
    c(f"{forge}: signature of the body with a trailing newline", 401, **base, sign="trailing_newline")
    c(f"{forge}: missing event header", 400, **base, drop_headers=["x-github-event","x-gitea-event","x-forgejo-event"])
    c(f"{forge}: missing delivery header", 400, **base, drop_headers=["x-github-delivery","x-gitea-delivery","x-forgejo-delivery"])
    c(f"{forge}: content type text/plain", 415, **base, headers={"content-type":"text/plain"})
    c(f"{forge}: content type missing", 415, **base, drop_headers=["content-type"])
    c(f"{forge}: content type application/xml", 415, **base, headers={"content-type":"application/xml"})
    c(f"{forge}: content type multipart", 415, **base, headers={"content-type":"multipart/form-data; boundary=x"})
    c(f"{forge}: content type json with a charset is fine but body empty", 400, forge=forge, **ev, body_inline="", headers={"content-type":"application/json; charset=utf-8"})
    c(f"{forge}: form without payload field", 400, forge=forge, **ev, body_inline="foo=bar&baz=1", headers={"content-type":"application/x-www-form-urlencoded"})
    c(f"{forge}: form payload is broken JSON", 400, forge=forge, **ev, body_inline="payload=%7B%22action%22%3A", headers={"content-type":"application/x-www-form-urlencoded"})
    c(f"{forge}: form payload empty", 400, forge=forge, **ev, body_inline="payload=", headers={"content-type":"application/x-www-form-urlencoded"})
    c(f"{forge}: form payload not JSON at all", 400, forge=forge, **ev, body_inline="payload=hello+world", headers={"content-type":"application/x-www-form-urlencoded"})
    c(f"{forge}: form payload with invalid percent escapes", 400, forge=forge, **ev, body_inline="payload=%ZZ%7B", headers={"content-type":"application/x-www-form-urlencoded"})
    c(f"{forge}: JSON body sent as form", 400, **base, headers={"content-type":"application/x-www-form-urlencoded"})
    c(f"{forge}: body one byte over the limit", 413, forge=forge, **ev, generator="oversize")
    c(f"{forge}: body over the limit, chunked without length", 413, forge=forge, **ev, generator="oversize", chunked=True)
    c(f"{forge}: unsigned body over the limit", 401, forge=forge, **ev, generator="oversize", sign=False)
    # --- JSON syntax
    c(f"{forge}: empty body", 400, forge=forge, **ev, body_inline="")
    for cut in [1, 10, 100, 1000]:
        c(f"{forge}: truncated after {cut} bytes", 400, **base, truncate=cut)
    c(f"{forge}: truncated one byte short", 400, **base, truncate=-1)
    c(f"{forge}: top level is an array", 400, forge=forge, **ev, body_inline="[]")
    c(f"{forge}: top level is null", 400, forge=forge, **ev, body_inline="null")
    c(f"{forge}: top level is a number", 400, forge=forge, **ev, body_inline="42")
    c(f"{forge}: top level is a string", 400, forge=forge, **ev, body_inline="\"issues\"")
    c(f"{forge}: trailing garbage", 400, **base, append="}}garbage")
    c(f"{forge}: two JSON documents", 400, **base, append="{}")
    c(f"{forge}: byte order mark", 400, **base, prepend_hex="efbbbf")
    c(f"{forge}: nested arrays 100000 deep", 400, forge=forge, **ev, generator="nested_arrays:30000")
    c(f"{forge}: nested objects 100000 deep", 400, forge=forge, **ev, generator="nested_objects:10000")
    c(f"{forge}: deep nesting inside the title", 400, **base, generator="nested_title:5000")
    c(f"{forge}: deep nesting in an ignored field", 200, **base, set=nontrig, generator="nested_ignored:5000")
    c(f"{forge}: duplicate action key", 400, **base, prepend_field='"action":"labeled",')
    c(f"{forge}: invalid UTF-8 in the title", 400, **base, set={"/issue/title":"@@RAW@@"}, raw_hex="fffe41")
    c(f"{forge}: invalid UTF-8 in a label name", 400, **base, set={"/issue/labels/0/name":"@@RAW@@"}, raw_hex="c328")
    c(f"{forge}: overlong UTF-8 in the repository name", 400, **base, set={"/repository/full_name":"@@RAW@@"}, raw_hex="c0af")
    c(f"{forge}: lone surrogate escape in the title", 400, **base, set={"/issue/title":"@@RAW@@"}, raw_text="\\ud800")
    c(f"{forge}: raw control character in the title", 400, **base, set={"/issue/title":"@@RAW@@"}, raw_hex="01")
    c(f"{forge}: NaN number", 400, **base, set={"/issue/number":"@@RAW@@"}, raw_text="NaN", raw_unquoted=True)
    # --- wrong types
    for ptr, val, what in [("/issue/number","42","number as a string"),("/issue/number",-1,"negative number"),
                           ("/issue/number",4294967296,"number over u32"),("/issue/number",1.5,"fractional number"),
                           ("/issue/number",None,"null number"),("/issue/title",7,"title as a number"),
                           ("/issue/title",None,"null title"),("/issue/labels",{"name":"x"},"labels as an object"),
                           ("/issue/labels",[7],"label as a number"),("/issue/labels",[{"name":None}],"label name null"),
                           ("/issue/state",[],"state as an array"),("/action",1,"action as a number"),
                           ("/repository","octo/x","repository as a string"),("/repository/full_name",None,"repository name null"),
                           ("/repository/clone_url",False,"clone_url as a bool"),("/sender",None,"sender null"),
                           ("/sender/login",{},"sender login as an object"),("/issue",[],"issue as an array")]:
        c(f"{forge}: {what}", 400, **base, set={ptr:val})
    # --- missing fields
    for ptr in ["/action","/issue","/issue/number","/issue/title","/issue/state","/repository","/repository/full_name",
                "/repository/clone_url","/sender","/sender/login"]:
        c(f"{forge}: missing {ptr}", 400, **base, remove=[ptr])
    # --- comments
    cbase=dict(forge=forge, body_file=com, event="issue_comment", **({} if forge=="github" else {"event_type":"issue_comment"}))
    c(f"{forge}: comment without comment object", 400, **cbase, remove=["/comment"])
    c(f"{forge}: comment body as a number", 400, **cbase, set={"/comment/body":5})
    c(f"{forge}: comment id negative", 400, **cbase, set={"/comment/id":-3})
    c(f"{forge}: comment truncated", 400, **cbase, truncate=200)
    # --- odd but well-formed: recorded, ignored, no task
    c(f"{forge}: huge title on a non-trigger label", 200, **base, set=nontrig, generator="huge_title:60000")
    c(f"{forge}: NUL in the title on a non-trigger label", 200, **base, set={**nontrig, "/issue/title":"a\u0000b"})
    c(f"{forge}: NUL inside the trigger label name", 200, **base, set=({"/label":{"name":"forgehand\u0000"}} if forge=="github" else {"/issue/labels":[{"name":"forgehand\u0000"}]}))
    c(f"{forge}: trigger label with different case and spaces", 200, **base, set=({"/label":{"name":" Forgehand "}} if forge=="github" else {"/issue/labels":[{"name":" Forgehand "}]}))
    c(f"{forge}: 5000 labels none of them the trigger", 200, **base, generator="many_labels:2000", set=nontrig)
    c(f"{forge}: issues action never heard of", 200, **base, set={"/action":"teleported"})
    c(f"{forge}: issues action empty", 200, **base, set={"/action":""})
    c(f"{forge}: issues action with emoji and RTL text", 200, **base, set={"/action":"\u202e\U0001F600labeled"})
    for event in ["star","fork","workflow_run","deployment","member","x-unknown-event","ISSUES"]:
        c(f"{forge}: event {event} never acted on", 200, forge=forge, event=event, **({} if forge=="github" else {"event_type":event}), body_inline='{"action":"created","zen":"x"}')
    c(f"{forge}: unknown event with a non-object body", 400, forge=forge, event="star", **({} if forge=="github" else {"event_type":"star"}), body_inline='[1,2]')
    c(f"{forge}: unknown event whose action is a number", 400, forge=forge, event="star", **({} if forge=="github" else {"event_type":"star"}), body_inline='{"action":3}')
    c(f"{forge}: ping with a broken body", 400, forge=forge, event="ping", body_inline='{"zen":', **({} if forge=="github" else {"event_type":"ping"}))
    c(f"{forge}: comment on a closed issue with a plain body", 200, **cbase, set={"/comment/body":"thanks!"})
    c(f"{forge}: comment that only mentions the command mid-text", 200, **cbase, set={"/comment/body":"please do not run /forgehand here"})
    c(f"{forge}: issue number zero on a non-trigger label", 200, **base, set={**nontrig, "/issue/number":0})

# --- cross forge
c("gitea delivery as sent, to the GitHub endpoint", 401, forge="github", dialect="gitea", event_type="issue_label", body_file=GT_LAB, sign_secret="gitea")
c("github delivery as sent, to the Gitea endpoint", 401, forge="gitea", dialect="github", body_file=GH_LAB, sign_secret="github")
c("gitea review event to the GitHub endpoint", 200, forge="github", event="pull_request_rejected", body_file=GT_REV)
c("github review payload broken on GitHub", 400, forge="github", event="pull_request_review", body_file=GH_REV, remove=["/review"])
c("gitea review payload broken on Gitea", 400, forge="gitea", event="pull_request_rejected", event_type="pull_request_review_rejected", body_file=GT_REV, remove=["/pull_request"])
c("github pull_request_review to the Gitea endpoint", 200, forge="gitea", event="pull_request_review", event_type="pull_request_review", body_file=GH_REV)
c("gitea push to the GitHub endpoint", 200, forge="github", event="push", body_file="gitea/push.json")
# --- endpoints
c("unknown forge name", 404, forge="nope", body_file=GH_LAB)
c("unknown forge name with odd characters", 404, forge="n%C3%A9%00pe", body_file=GH_LAB)
c("forge with no webhook secret", 403, forge="unsigned", body_file=GH_LAB)
c("forge with no webhook secret, no signature either", 403, forge="unsigned", body_file=GH_LAB, sign=False)
c("redelivery of the same id is a duplicate", 200, forge="github", body_file=GH_LAB, set={"/label":{"name":"other"}}, delivery_id="bad-corpus-duplicate", repeat=True)
json.dump({"about":"Hostile or broken webhook deliveries; tests/it/hardening.rs runs each one through the real router. Fields: name, forge (endpoint), dialect (header style, default the forge's kind), event, event_type (Gitea), body_file (tests/data) | body_inline | generator, set/remove (JSON pointer edits), truncate, append, prepend_hex, raw_hex/raw_text (replace the \"@@RAW@@\" string), headers (set), drop_headers, sign (true | false | wrong | other_body | empty_secret | twice | truncated | trailing_newline), sign_secret, chunked, delivery_id + repeat, expect_status.","cases":cases}, open("cases.json","w"), indent=1, ensure_ascii=True)
print(len(cases))
