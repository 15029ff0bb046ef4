from django.core.management.base import BaseCommand

from config.roles import roles_sync


class Command(BaseCommand):
    help = "Create the role groups and (re)assign their permissions."

    def handle(self, *args, **options):
        for group, count in roles_sync().items():
            self.stdout.write(f"{group}: {count} permissions")
