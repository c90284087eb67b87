from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    # `sessions` is django.contrib.sessions' label; this app's tables are conversations_*.
    name = "sessions"
    label = "conversations"
    verbose_name = "Conversations"
