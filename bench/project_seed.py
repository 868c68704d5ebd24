"""Run by the rendered project's interpreter: `python project_seed.py <package> <email> <count>`.

Creates one verified plain user (password on standard input) and `count` more verified users
for the admin list, through the project's own models and role service. One Argon2 hash is
shared by all the extra users: they never log in.
"""

import asyncio
import importlib
import sys


async def seed(package: str, email: str, password: str, count: int) -> None:
    config = importlib.import_module(f"{package}.config")
    database = importlib.import_module(f"{package}.database")
    passwords = importlib.import_module(f"{package}.auth.passwords")
    models = importlib.import_module(f"{package}.users.models")
    rbac_service = importlib.import_module(f"{package}.rbac.service")
    permissions = importlib.import_module(f"{package}.rbac.permissions")
    importlib.import_module(f"{package}.models")  # every table joins the metadata

    settings = config.Settings()
    engine = database.create_engine(settings)
    hashed = await passwords.PasswordService(concurrency=1).hash(password)
    try:
        async with database.create_sessionmaker(engine)() as session:
            addresses = [email] + [f"seed{index:03d}@bench.example.com" for index in range(count)]
            for address in addresses:
                user = models.User(
                    email=address, password_hash=hashed, email_verified_at=database.utcnow()
                )
                session.add(user)
                await session.flush()
                await rbac_service.grant_role(session, user.id, permissions.USER_ROLE)
            await session.commit()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    package_name, user_email, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(seed(package_name, user_email, sys.stdin.readline().rstrip("\n"), extra))
