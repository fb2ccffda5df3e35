"""Business logic over protocols: testable without torch or a web server."""
