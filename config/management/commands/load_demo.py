from django.core.management.base import BaseCommand

from config.demo import DEMO_USERS, demo_load


class Command(BaseCommand):
    help = "Create the role groups, one demo user per role and the demo knowledge base."

    def handle(self, *args, **options):
        created = demo_load()
        self.stdout.write(
            f"Demo data: {created['users']} users and {created['articles']} articles created "
            "(existing ones left as they were)."
        )
        if options["verbosity"] >= 1:
            self.stdout.write("Demo logins (username / password):")
            for user in DEMO_USERS:
                self.stdout.write(f"  {user.username:<11} {user.password:<20} {user.role}")
