"""Outside systems (Slack, Jira, Zendesk, ...). Never imports torch."""
