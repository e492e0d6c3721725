"""Example approval worker.

The engine runs it twice. First with decision "proposed": it drafts the digest and
asks for a decision. After a human approves, again with decision "approved" and the
approved outputs in approved_output (the reviewer may have edited the draft): only then
does it "send" (here: write out/sent.md).
"""
import json
import pathlib

inputs = json.loads(pathlib.Path("inputs.json").read_text())
recipient = inputs["recipient"]
note = inputs.get("note") or ""
out = pathlib.Path("out")
out.mkdir(exist_ok=True)

if inputs.get("decision") == "approved":
    approved = inputs.get("approved_output") or {}
    body = approved.get("draft") if isinstance(approved, dict) else None
    (out / "sent.md").write_text(body or "(empty digest)")
    print(f"sent the digest to {recipient}")
    result = {
        "status": "success",
        "outputs": {"sent_to": recipient},
        "artifacts": [{"path": "out/sent.md", "type": "text/markdown"}],
    }
else:
    draft = f"# Digest for {recipient}\n\n{note}\n\nNothing is sent until someone approves.\n"
    (out / "digest.md").write_text(draft)
    print("drafted the digest; waiting for approval")
    result = {
        "status": "success",
        "outputs": {"digest": "out/digest.md", "draft": draft},
        "decision_required": {
            "label": f"Send this digest to {recipient}?",
            "preview": draft,
            "preview_type": "markdown",
        },
    }

pathlib.Path("result.json").write_text(json.dumps(result))
