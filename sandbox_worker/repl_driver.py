# nbrl REPL driver: runs inside the bubblewrap sandbox, one process per session.
#
# The worker starts it as `python3 -I -S -c <this file>` with two extra pipes:
# fd 3 carries requests from the worker, fd 4 carries replies to it. Each message
# is a frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
# stdout and stderr of the process are not part of the protocol; a cell's output
# is captured in Python and sent back inside its "result" frame.
#
# Frames the worker sends:            Frames the driver sends:
#   {"op": "exec", "code": str,         {"op": "ready"}             once, at start
#    "max_output_bytes": int}           {"op": "tool", "tool": str, "args": {...}}
#   {"op": "tool_result", "ok": bool,   {"op": "result", ...}       one per exec
#    "result": any, "error": str}
#
# The worker interrupts a cell that runs past its timeout with SIGINT; the
# driver turns that into KeyboardInterrupt only while a cell runs.
import ast
import builtins
import json
import linecache
import os
import signal
import sys
import time
import traceback

REQ_FD, RESP_FD = 3, 4
MAX_FRAME = 64 << 20
PREVIEW_CHARS = 80
MAX_VARIABLES = 50
TODO_STATUSES = ("pending", "in_progress", "done", "dropped")
DRIVER_FILENAME = "<string>"  # what `python3 -c` names this code


def _read_exact(n):
    chunks = []
    while n > 0:
        b = os.read(REQ_FD, min(n, 1 << 20))
        if not b:
            raise EOFError("worker closed the request pipe")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def recv():
    n = int.from_bytes(_read_exact(4), "big")
    if n > MAX_FRAME:
        raise EOFError("frame too large")
    return json.loads(_read_exact(n).decode("utf-8"))


def send(msg):
    data = json.dumps(msg, ensure_ascii=False, default=str).encode("utf-8", "replace")
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(RESP_FD, data):]


class Capture:
    """A text stream that keeps the first `budget` bytes and counts the rest."""

    def __init__(self, budget):
        self.budget = budget
        self.parts = []
        self.kept = 0
        self.dropped = 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        b = s.encode("utf-8", "replace")
        room = self.budget - self.kept
        if len(b) <= room:
            self.parts.append(s)
            self.kept += len(b)
        else:
            if room > 0:
                self.parts.append(b[:room].decode("utf-8", "ignore"))
                self.kept = self.budget
            self.dropped += len(b) - max(room, 0)
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    encoding = "utf-8"
    errors = "replace"

    def text(self):
        out = "".join(self.parts)
        if self.dropped:
            out += "\n...[output truncated: %d more bytes]" % self.dropped
        return out


class Notepad:
    """The agent's working memory: todo items with a status, facts and a draft.

    notepad.add_todo("find the year")       -> 1
    notepad.update_todo(1, status="done")
    notepad.add_facts("Paris is the capital", "population 2.1M")
    notepad.write_draft("The answer is ...")
    """

    def __init__(self):
        self._todos = []
        self._facts = []
        self._draft = ""

    def add_todo(self, text, status="pending"):
        self._check_status(status)
        self._todos.append({"id": len(self._todos) + 1, "text": str(text), "status": status})
        return len(self._todos)

    def update_todo(self, todo_id, status=None, text=None):
        if not isinstance(todo_id, int) or not 1 <= todo_id <= len(self._todos):
            raise ValueError("no todo with id %r (ids are 1..%d)" % (todo_id, len(self._todos)))
        item = self._todos[todo_id - 1]
        if status is not None:
            self._check_status(status)
            item["status"] = status
        if text is not None:
            item["text"] = str(text)

    def complete_todo(self, todo_id):
        self.update_todo(todo_id, status="done")

    def add_facts(self, *facts):
        for f in facts:
            if isinstance(f, (list, tuple)):
                self._facts.extend(str(x) for x in f)
            else:
                self._facts.append(str(f))

    def write_draft(self, text):
        self._draft = str(text)

    def append_draft(self, text):
        self._draft += str(text)

    @staticmethod
    def _check_status(status):
        if status not in TODO_STATUSES:
            raise ValueError("todo status must be one of %s, got %r" % (TODO_STATUSES, status))

    def state(self):
        return {"todos": [dict(t) for t in self._todos], "facts": list(self._facts),
                "draft": self._draft}

    def __repr__(self):
        lines = ["Notepad:"]
        lines += ["  [%s] %d. %s" % (t["status"], t["id"], t["text"]) for t in self._todos]
        lines += ["  fact: %s" % f for f in self._facts]
        if self._draft:
            lines.append("  draft: %s" % self._draft)
        return "\n".join(lines)


class ToolError(Exception):
    """A host-side tool failed (bad arguments, timeout, quota, not enabled)."""


class Driver:
    def __init__(self):
        self.notepad = Notepad()
        self.final_answer = None
        self.in_cell = False
        self.cell_count = 0
        self.ns = {"__name__": "__main__", "__builtins__": builtins}
        self.predefined = {}
        self.pid = os.getpid()
        self._install()

    def _install(self):
        def submit_final_answer(answer):
            """Records the final answer of the task; the episode ends after this cell."""
            self.final_answer = str(answer)
            return "final answer recorded"

        def web_search(query, k=5):
            """Searches the document index; returns [{id, title, snippet}]."""
            return self.call_tool("web_search", {"query": str(query), "k": int(k)})

        def read_page(doc_id, max_chars=None):
            """Returns the text of the document `doc_id` (cut to a budget)."""
            args = {"id": str(doc_id)}
            if max_chars is not None:
                args["max_chars"] = int(max_chars)
            return self.call_tool("read_page", args)

        for name, value in (("notepad", self.notepad), ("submit_final_answer", submit_final_answer),
                            ("web_search", web_search), ("read_page", read_page),
                            ("ToolError", ToolError)):
            self.ns[name] = value
            self.predefined[name] = value

    def call_tool(self, tool, args):
        send({"op": "tool", "tool": tool, "args": args})
        reply = recv()
        if reply.get("op") != "tool_result":
            raise ToolError("protocol error: expected tool_result")
        if not reply.get("ok"):
            raise ToolError("%s: %s" % (tool, reply.get("error", "failed")))
        return reply.get("result")

    def on_sigint(self, signum, frame):
        if self.in_cell:
            raise KeyboardInterrupt("cell interrupted: wall-clock timeout")

    def run_cell(self, code, budget):
        self.cell_count += 1
        filename = "<cell-%d>" % self.cell_count
        out, err = Capture(budget), Capture(budget)
        reply = {"op": "result", "result": "", "error": None, "interrupted": False}
        start = time.monotonic()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            self.in_cell = True
            reply["result"] = self._exec(code, filename, budget)
        except KeyboardInterrupt as e:
            reply["interrupted"] = True
            reply["error"] = self._error(e, filename)
        except BaseException as e:  # SystemExit too: the session lives on
            reply["error"] = self._error(e, filename)
        finally:
            self.in_cell = False
            sys.stdout, sys.stderr = saved
        reply["duration_s"] = time.monotonic() - start
        reply.update(stdout=out.text(), stderr=err.text(), stdout_truncated=bool(out.dropped),
                     stderr_truncated=bool(err.dropped))
        return reply

    def _exec(self, code, filename, budget):
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, "exec"), self.ns)
        if last is None:
            return ""
        value = eval(compile(last, filename, "eval"), self.ns)
        if value is None:
            return ""
        self.ns["_"] = value
        text = repr(value)
        if len(text.encode("utf-8", "replace")) > budget:
            text = text[:budget] + "\n...[result truncated: %d chars]" % len(text)
        return text

    def _error(self, e, filename):
        # Keep the user's frames (and the library frames they called), not ours.
        frames = traceback.extract_tb(e.__traceback__)
        while frames and not frames[0].filename.startswith("<cell-"):
            frames.pop(0)
        while frames and frames[-1].filename == DRIVER_FILENAME:
            frames.pop()
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.format_list(frames)
        lines += traceback.format_exception_only(type(e), e)
        return {"name": type(e).__name__, "message": str(e), "traceback": "".join(lines)}

    def variables(self):
        out = []
        for name, value in list(self.ns.items()):
            if name.startswith("_") or self.predefined.get(name, self) is value:
                continue
            if type(value).__name__ == "module":
                continue
            out.append(self._describe(name, value))
            if len(out) >= MAX_VARIABLES:
                break
        return out

    @staticmethod
    def _describe(name, value):
        size = ""
        shape = getattr(value, "shape", None)
        try:
            if shape is not None and not callable(shape):
                size = "shape=%s" % (tuple(shape),)
            elif hasattr(value, "__len__") and not isinstance(value, type):
                size = "len=%d" % len(value)
        except Exception:
            size = ""
        if isinstance(value, (str, bytes)) and len(value) > PREVIEW_CHARS:
            value = value[:PREVIEW_CHARS]  # repr of a huge string costs its size
        try:
            preview = repr(value) if not isinstance(value, (list, dict, set, tuple)) or \
                len(value) < 1000 else repr(type(value)(list(value)[:20]) if not isinstance(value, dict)
                                             else dict(list(value.items())[:20]))
        except Exception as e:
            preview = "<repr failed: %s>" % type(e).__name__
        if len(preview) > PREVIEW_CHARS:
            preview = preview[:PREVIEW_CHARS - 3] + "..."
        return {"name": name, "type": type(value).__name__, "size": size, "preview": preview}

    def serve(self):
        signal.signal(signal.SIGINT, self.on_sigint)
        send({"op": "ready", "pid": os.getpid()})
        while True:
            try:
                req = recv()
            except EOFError:
                return
            if req.get("op") != "exec":
                continue
            reply = self.run_cell(str(req.get("code", "")), max(int(req.get("max_output_bytes", 0)), 256))
            if os.getpid() != self.pid:
                os._exit(0)  # a child the cell forked must not answer for the driver
            try:
                # A user __repr__ may loop: let the timeout interrupt it too.
                self.in_cell = True
                reply["variables"] = self.variables()
                reply["notepad"] = self.notepad.state()
            except BaseException as e:
                reply["variables"], reply["notepad"] = [], {"todos": [], "facts": [], "draft": ""}
                reply["stderr"] += "\n[driver: could not summarize state: %s]" % type(e).__name__
            finally:
                self.in_cell = False
            reply["final_answer"] = self.final_answer
            send(reply)


if __name__ == "__main__":
    Driver().serve()
