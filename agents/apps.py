from django.apps import AppConfig

from agents.egress import egress_settings_check


class AgentsConfig(AppConfig):
    name = "agents"
    label = "agents"

    def ready(self) -> None:
        egress_settings_check()
