"""Start and stop the local stack: Postgres, Redis, the Firestore and Pub/Sub emulators
and every function served by functions-framework, all on loopback.

One implementation serves both `make dev` (profile "dev") and the test suite (profile
"test", its own ports and data), so what the tests prove is what a developer runs.
Every long-running child is started in its own session (setsid) and stopped by process
group, because killing an emulator's launcher alone orphans its JVM. Before anything
starts, emulators/prerequisites.py checks what the machine must have (and installs
what Debian packages).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators import database, issuer, logins, prerequisites
from infra.functions import PORT_BLOCK, discover, push_functions, tick_functions, topics_of

REPO = Path(__file__).resolve().parent.parent

# Every folder under functions/ (infra/functions.py), each on the port its deploy.json's
# local_port_offset names. A Pub/Sub-triggered function gets a push subscription on its
# tick topic, as Eventarc gives it in Google Cloud, and on each topic pushed to it.
FUNCTIONS = discover()
ERP_TOKEN = "local-erp-token"  # the local ERP receiver's credential; in Google Cloud, a secret
PAYMENT_PROVIDER_TOKEN = "local-payment-provider-token"  # the local fake provider's; a secret there too

DEFAULT_PORT_BASE = {"dev": 54300, "test": 54400, "docs": 54500}  # docs: tests/e2e/test_docs_examples.py
RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
PROJECT = "demo-wallet-ledger"


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    profile: str = "dev"
    port_base: int = 0
    state_dir: Path = field(default=Path())
    pg_bin_override: Path | None = None  # the PostgreSQL binaries to use; found by default

    def __post_init__(self) -> None:
        if not self.port_base:
            env = f"LEDGER_{self.profile.upper()}_PORT_BASE"
            self.port_base = int(os.environ.get(env, DEFAULT_PORT_BASE.get(self.profile, 54600)))
        if self.state_dir == Path():
            self.state_dir = REPO / ".stack" / self.profile

    # Ports and addresses ----------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        ports = {
            "postgres": self.port_base,
            "redis": self.port_base + 1,
            "firestore": self.port_base + 2,
            "pubsub": self.port_base + 3,
            "erp": self.port_base + 4,
            "issuer": self.port_base + 5,
            "payments": self.port_base + 6,
        }
        for name, function in FUNCTIONS.items():
            ports[name] = self.port_base + function.local_port_offset
        return ports

    def function_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self) -> dict[str, str]:
        """The environment a function (or a test) needs to reach this stack, but for its
        database login (login_env)."""
        p = self.ports
        # The tests change grants and then call as the grantee: a principal's grants are
        # cached for a second there, not the default 30.
        cache = {"LEDGER_AUTH_PRINCIPAL_TTL_S": "1"} if self.profile == "test" else {}
        return {
            "LEDGER_DB_HOST": "127.0.0.1",
            "LEDGER_DB_PORT": str(p["postgres"]),
            "LEDGER_DB_NAME": "ledger",
            "LEDGER_DB_SSLMODE": "disable",  # the local server has no TLS: don't spend a handshake asking
            "LEDGER_REDIS_URL": f"redis://127.0.0.1:{p['redis']}/0",
            "LEDGER_GCP_PROJECT": PROJECT,
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{p['firestore']}",
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{p['pubsub']}",
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "LEDGER_ERP_URL": f"http://127.0.0.1:{p['erp']}",
            "LEDGER_ERP_TOKEN": ERP_TOKEN,
            "LEDGER_PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{p['payments']}",
            "LEDGER_PAYMENT_PROVIDER_TOKEN": PAYMENT_PROVIDER_TOKEN,
            # the local token issuer (emulators/issuer.py), trusted as Google's are in the cloud
            "LEDGER_AUTH_ISSUERS": json.dumps(issuer.trusted_issuers(p["issuer"])),
            "LEDGER_CURSOR_KEY": self.cursor_key,
            **cache,
        }

    @property
    def cursor_key(self) -> str:
        """The key that signs paging cursors, generated into the stack's state on first
        use and kept there, so every function of the stack (and a restart) shares it."""
        path = self.state_dir / "cursor-key"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)  # a secret: for the stack's user alone
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    @property
    def passwords(self) -> logins.Passwords:
        return logins.Passwords(self.state_dir)

    def login(self, name: str) -> tuple[str, str]:
        """A login's local user and this stack's password for it (emulators/logins.py)."""
        user = logins.LOGINS[name].user
        return user, self.passwords[user]

    def login_env(self, name: str) -> dict[str, str]:
        user, password = self.login(name)
        return {"LEDGER_DB_USER": user, "LEDGER_DB_PASSWORD": password}

    def function_env(self, name: str) -> dict[str, str]:
        """The environment of one function, logged in as its deploy.json's database_login."""
        return {**self.env(), **self.login_env(FUNCTIONS[name].database_login)}

    def operator_env(self) -> dict[str, str]:
        """For the operator's CLI locally (make ops, common.reconcile): its own login,
        which sweeps, exports and reads, and is not the database's owner."""
        return {**self.env(), **self.login_env(logins.OPERATOR_LOGIN)}

    def in_process_env(self) -> dict[str, str]:
        """For the ledger service run in-process (the tests, the benchmarks)."""
        return {**self.env(), **self.login_env(logins.IN_PROCESS)}

    def pubsub_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['pubsub']}/v1/projects/{PROJECT}/{path}"

    def owner_dsn(self) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": self.ports["postgres"],
            "database": "ledger",
            "user": logins.OWNER,
            "password": self.passwords[logins.OWNER],
        }

    # State ------------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _load_state(self) -> dict[str, int]:
        try:
            return json.loads(self._state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def pgid(self, name: str) -> int | None:
        """The process group a spawned service runs in (None: not started)."""
        return self._load_state().get(name)

    def _save_pgid(self, name: str, pgid: int) -> None:
        state = self._load_state()
        state[name] = pgid
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps(state))

    # Postgres ---------------------------------------------------------------

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "pg"

    @property
    def pg_bin(self) -> Path:
        """The binaries of the cluster's own major version (emulators/prerequisites.py picks one for a new cluster)."""
        return self.pg_bin_override or prerequisites.postgres_bin(self.pg_dir / "data")

    def _pg_user(self) -> str | None:
        """The unprivileged user Postgres runs as when we are root, else None."""
        if os.geteuid() != 0:
            return None
        for candidate in ("postgres", "ledgerpg"):
            try:
                pwd.getpwnam(candidate)
                return candidate
            except KeyError:
                continue
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "ledgerpg"], check=True
        )
        return "ledgerpg"

    def _as_pg(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        user = self._pg_user()
        cmd = ["runuser", "-u", user, "--", *args] if user else args
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)

    def _prepare_pg_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        user = self._pg_user()
        if user is None:
            return
        # Postgres must reach its data dir as the unprivileged user: open the path's
        # directories for traversal (execute only, not listing) where they are not.
        for parent in [self.state_dir, *self.state_dir.parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        if self.pg_dir.exists():
            shutil.chown(self.pg_dir, user, user)

    def start_postgres(self) -> None:
        self._prepare_pg_dir()
        data = self.pg_dir / "data"
        fresh = not (data / "PG_VERSION").exists()
        if fresh:
            self.pg_dir.mkdir(parents=True, exist_ok=True)
            user = self._pg_user()
            if user:
                shutil.chown(self.pg_dir, user, user)
            pwfile = self.pg_dir / "pwfile"
            pwfile.touch(mode=0o600)
            pwfile.write_text(self.passwords[logins.SUPERUSER] + "\n")
            if user:
                shutil.chown(pwfile, user, user)
            self._as_pg(
                [
                    str(self.pg_bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
            pwfile.unlink()
            settings = [
                "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{self.pg_dir}'",
                "max_connections = 200",
                "shared_buffers = 256MB",
                "log_min_messages = warning",
            ]
            if self.profile == "test":
                # The test cluster is thrown away: surviving a crash of the machine only
                # costs time there. A crash of Postgres itself it must survive, as the
                # faults smoke test kills it right after acknowledgements: commits stay
                # synchronous (each waits for its WAL to be written to the kernel; with
                # fsync off, not for the disk). docs/durability.md.
                settings += ["fsync = off", "full_page_writes = off"]
            with open(data / "postgresql.conf", "a") as conf:
                conf.write("\n" + "\n".join(settings) + "\n")
        if not self._pg_ready():
            self._as_pg(
                [
                    str(self.pg_bin / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(self.pg_dir / "postgres.log"),
                    "-o",
                    # pg_stat_statements loaded (tracking top-level statements only, its
                    # cheap default) so `python -m bench.db_time` can see where a
                    # posting's time goes; on the command line, so older clusters get it
                    # on their next start too.
                    f"-p {self.ports['postgres']} -c shared_preload_libraries=pg_stat_statements",
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            )
        if not self.psql("SELECT 1 FROM pg_database WHERE datname = 'ledger'").strip():
            self._bootstrap_database()
        self.psql(logins.ensure_sql(self.passwords))

    def _pg_ready(self) -> bool:
        result = subprocess.run(
            [str(self.pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.ports["postgres"])], capture_output=True
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._as_pg(
            [
                str(self.pg_bin / "psql"),
                "-h",
                str(self.pg_dir),
                "-p",
                str(self.ports["postgres"]),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
            ],
            input=sql,  # on standard input, not the command line: the SQL may hold a password
        ).stdout

    def _bootstrap_database(self) -> None:
        """The owner and the database, as a cloud project's administrator would create
        them; the logins follow (emulators/logins.py)."""
        self.psql(f"CREATE ROLE {logins.OWNER} LOGIN CREATEROLE")
        self.psql(f"CREATE DATABASE ledger OWNER {logins.OWNER}")

    def stop_postgres(self) -> None:
        data = self.pg_dir / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._as_pg([str(self.pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass

    # Redis ------------------------------------------------------------------

    def start_redis(self) -> None:
        (self.state_dir / "redis").mkdir(parents=True, exist_ok=True)
        if port_open(self.ports["redis"]):
            return
        self._spawn(
            "redis",
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.ports["redis"]),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.state_dir / "redis"),
            ],
        )
        wait_for(lambda: port_open(self.ports["redis"]), "redis", 10)

    # Emulators --------------------------------------------------------------

    def start_firestore(self) -> None:
        if not http_ok(f"http://127.0.0.1:{self.ports['firestore']}/"):
            self._spawn(
                "firestore",
                [
                    str(prerequisites.firestore_bin()),
                    "start",
                    "--host=127.0.0.1",
                    f"--port={self.ports['firestore']}",
                    "--database-mode=firestore-native",
                ],
            )
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.ports['firestore']}/"), "firestore emulator", 60)

    def start_pubsub(self, topics: bool = True) -> None:
        """The emulator, and (`topics`) the ledger's topics and subscriptions, which the
        emulator forgets when it stops."""
        if not http_ok(f"http://127.0.0.1:{self.ports['pubsub']}/"):
            data = self.state_dir / "pubsub"
            data.mkdir(parents=True, exist_ok=True)
            self._spawn(
                "pubsub",
                [
                    str(prerequisites.pubsub_bin()),
                    "--host=127.0.0.1",
                    f"--port={self.ports['pubsub']}",
                    f"--data-dir={data}",
                ],
            )
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.ports['pubsub']}/"), "pubsub emulator", 60)
        if topics:
            self.create_topics()

    def create_topics(self) -> None:
        """The ledger's topics and the push subscriptions of the Pub/Sub-triggered
        functions (names from common/config.py), created if absent: a tick topic's, and
        each pushed topic's with its retry policy and dead-letter topic, as Terraform
        makes them in Google Cloud (infra/terraform/pubsub.tf)."""
        settings = self.settings()
        for topic in (settings.events_topic, settings.action_results_topic, settings.notifications_topic):
            self._pubsub_put(f"topics/{topic}", None)
        for function in tick_functions(FUNCTIONS).values():
            topic = getattr(settings, function.tick_topic_setting)
            self._pubsub_put(f"topics/{topic}", None)
            self._pubsub_put(
                f"subscriptions/{topic}-{function.name}",
                {
                    "topic": f"projects/{PROJECT}/topics/{topic}",
                    # to the path naming the topic, as in Google Cloud (pubsub.tf): the
                    # event's source then names it, and automation recognises its ticks by it
                    "pushConfig": {
                        "pushEndpoint": f"{self.function_url(function.name)}/projects/{PROJECT}/topics/{topic}"
                    },
                    "ackDeadlineSeconds": 600,  # an export pass may take minutes
                },
            )
        for function in push_functions(FUNCTIONS).values():
            for topic in self.pushed_topics(function.name):
                if self.profile == "test" and topic == settings.events_topic:
                    # Every posting of the suite would be pushed to it: the tests that
                    # need it subscribe it themselves (push_subscription).
                    continue
                self.push_subscription(function.name, topic)

    def settings(self) -> Any:
        from common.config import Settings

        return Settings.from_env(self.env())

    def pushed_topics(self, function: str) -> list[str]:
        settings = self.settings()
        return [
            topic for field in FUNCTIONS[function].push_topic_settings for topic in topics_of(getattr(settings, field))
        ]

    def dead_letter_topic(self, function: str) -> str:
        return str(getattr(self.settings(), FUNCTIONS[function].dead_letter_topic_setting or ""))

    def push_subscription(self, function: str, topic: str, max_deliveries: int | None = None) -> str:
        """`topic`'s push subscription to `function`, created if absent: to the path that
        names the topic (functions-framework makes it the event's source), retried with
        backoff, dead-lettered after `max_deliveries` to the function's dead-letter topic,
        which has a pull subscription of the same name so nothing dead-lettered is lost."""
        settings = self.settings()
        dead_letters = self.dead_letter_topic(function)
        self._pubsub_put(f"topics/{topic}", None)
        self._pubsub_put(f"topics/{dead_letters}", None)
        self._pubsub_put(f"subscriptions/{dead_letters}", {"topic": f"projects/{PROJECT}/topics/{dead_letters}"})
        name = f"{topic}-{function}"
        self._pubsub_put(
            f"subscriptions/{name}",
            {
                "topic": f"projects/{PROJECT}/topics/{topic}",
                "pushConfig": {"pushEndpoint": f"{self.function_url(function)}/projects/{PROJECT}/topics/{topic}"},
                "ackDeadlineSeconds": 60,
                "deadLetterPolicy": {
                    "deadLetterTopic": f"projects/{PROJECT}/topics/{dead_letters}",
                    "maxDeliveryAttempts": max_deliveries or settings.action_max_deliveries,
                },
                # Google Cloud's is 10 s to 600 s (infra/terraform/pubsub.tf); locally short,
                # so a dependency back up is retried within seconds
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "5s"},
            },
        )
        return name

    def pull_subscription(self, name: str, topic: str) -> str:
        """A pull subscription `name` on `topic` (both made if absent); its full name."""
        self._pubsub_put(f"topics/{topic}", None)
        self._pubsub_put(
            f"subscriptions/{name}", {"topic": f"projects/{PROJECT}/topics/{topic}", "ackDeadlineSeconds": 60}
        )
        return f"projects/{PROJECT}/subscriptions/{name}"

    def delete_subscription(self, name: str) -> None:
        request = urllib.request.Request(self.pubsub_url(f"subscriptions/{name}"), method="DELETE")
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise

    def _pubsub_put(self, path: str, body: dict | None) -> None:
        request = urllib.request.Request(
            self.pubsub_url(path),
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
            method="PUT",
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as error:
            if error.code != 409:  # 409: it exists already
                raise

    def publish(self, topic: str, data: bytes = b"tick", attributes: dict[str, str] | None = None) -> None:
        """Publish one message through the emulator's REST API (what Cloud Scheduler does)."""
        import base64

        body = {"messages": [{"data": base64.b64encode(data).decode(), "attributes": attributes or {}}]}
        request = urllib.request.Request(
            self.pubsub_url(f"topics/{topic}:publish"),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()

    # The ERP stand-in --------------------------------------------------------

    def start_erp(self) -> None:
        # journaled, as a real ERP keeps what it booked through a crash of its own
        journal = self.state_dir / "erp-journal.jsonl"
        self._serve("erp", "emulators.erp_receiver", "ERP receiver", f"--token={ERP_TOKEN}", f"--journal={journal}")

    # The payment provider stand-in --------------------------------------------

    def start_payments(self) -> None:
        self._serve("payments", "emulators.payment_provider", "payment provider", f"--token={PAYMENT_PROVIDER_TOKEN}")

    def _serve(self, name: str, module: str, what: str, *args: str) -> None:
        """One of the stack's own Python servers, on its port, unless it answers there."""
        url = f"http://127.0.0.1:{self.ports[name]}/health"
        if not http_ok(url):
            self._spawn(
                name,
                [sys.executable, "-m", module, f"--port={self.ports[name]}", *args],
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        wait_for(lambda: http_ok(url), what, 20)

    # The local token issuer --------------------------------------------------

    @property
    def issuer(self) -> str:
        return issuer.issuer_url(self.ports["issuer"])

    @property
    def issuer_key(self) -> Path:
        return issuer.ensure_key(self.state_dir)

    def start_issuer(self) -> None:
        self.issuer_key  # noqa: B018 - created before the server and any minting reads it
        self._serve("issuer", "emulators.issuer", "token issuer", f"--key-dir={self.state_dir}")

    def token(self, subject: str, **kwargs: Any) -> str:
        """A token from this stack's issuer for `subject` (a principal's subject)."""
        return issuer.mint(self.issuer_key, self.issuer, subject, **kwargs)

    # Functions --------------------------------------------------------------

    def start_functions(self, names: list[str] | None = None) -> None:
        names = names or list(FUNCTIONS)
        for name in names:
            if not http_responds(self.function_url(name)):
                self._spawn_function(name, name, self.ports[name])
        for name in names:
            wait_for(lambda n=name: http_responds(self.function_url(n)), f"function {name}", 60)

    def start_function_instance(self, name: str, label: str) -> str:
        """One more process of function `name` on a free port (what a second Cloud Run
        instance is), stopped with the stack (or stop_service(label)); returns its URL."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._spawn_function(name, label, port)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_responds(url), f"another instance of {name}", 60)
        return url

    def _spawn_function(self, name: str, label: str, port: int) -> None:
        env = {**os.environ, **self.function_env(name), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        env.pop("FUNCTION_TARGET", None)
        self._spawn(
            label,
            [
                str(Path(sys.executable).parent / "functions-framework"),
                *("--target", name, "--source", str(FUNCTIONS[name].source)),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            env=env,
        )

    # Process groups ---------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.state_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=self.state_dir,
        )
        self._save_pgid(name, proc.pid)

    def stop_service(self, name: str) -> None:
        if name == "postgres":
            self.stop_postgres()
            return
        state = self._load_state()
        pgid = state.pop(name, None)
        if pgid is not None:
            kill_group(pgid)
        self._state_file.write_text(json.dumps(state))
        port = self.ports.get(name)  # the scheduler listens on none
        if port is not None:
            wait_for(lambda: not port_open(port), f"{name} to stop", 20)

    def start_service(self, name: str) -> None:
        starters = {
            "postgres": self.start_postgres,
            "redis": self.start_redis,
            "firestore": self.start_firestore,
            "pubsub": self.start_pubsub,
            "erp": self.start_erp,
            "issuer": self.start_issuer,
            "payments": self.start_payments,
        }
        if name in starters:
            starters[name]()
        else:
            self.start_functions([name])

    def start_scheduler(self) -> None:
        """Cloud Scheduler's ticks, on the dev stack only (tests publish their own)."""
        if self.profile == "dev" and not group_alive(self._load_state().get("scheduler")):
            self._spawn(
                "scheduler",
                [sys.executable, "-m", "emulators.scheduler", f"--profile={self.profile}"],
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )

    # Whole stack ------------------------------------------------------------

    def check_prerequisites(self, install: bool = True) -> None:
        """Install what Debian packages, or stop with one message naming every missing piece."""
        prerequisites.ensure(self.pg_dir / "data", install)

    def up(self, functions: bool = True, install: bool = True) -> None:
        self.check_prerequisites(install)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.reserve_ports()
        self.start_postgres()
        self.start_redis()
        self.start_firestore()
        self.start_pubsub()
        self.start_erp()
        self.start_issuer()
        self.start_payments()
        database.migrate(self.owner_dsn())
        if functions:
            self.start_functions()
            self.start_scheduler()

    def reserve_ports(self) -> None:
        """Keep the kernel from handing this stack's fixed ports out as the ephemeral
        (client-side) ports of other connections: the stack's ports lie inside Linux's
        default ephemeral range (32768-60999), and a busy machine (another stack, a
        benchmark) once took one of them just before the server bound it. Needs root;
        without it the collision stays possible, if rare."""
        block = f"{self.port_base}-{self.port_base + PORT_BLOCK - 1}"
        try:
            current = [part for part in RESERVED_PORTS.read_text().strip().split(",") if part]
            if block not in current:
                RESERVED_PORTS.write_text(",".join([*current, block]))
        except OSError:
            pass

    def down(self) -> None:
        """Stop every process group the stack started, then wait for its ports to close.
        Every group goes before any port is waited for: a stack started before the
        functions' ports changed has one function on another's port."""
        state = self._load_state()
        for name in reversed(list(state)):
            if name != "postgres":
                kill_group(state.pop(name))
                self._state_file.write_text(json.dumps(state))
        self.stop_postgres()
        for name, port in self.ports.items():
            if name != "postgres":
                wait_for(lambda port=port: not port_open(port), f"{name} to stop", 20)

    def describe(self) -> list[tuple[str, str]]:
        p = self.ports
        rows = [
            ("postgres", f"postgresql://127.0.0.1:{p['postgres']}/ledger (passwords: {self.passwords.path})"),
            ("redis", f"redis://127.0.0.1:{p['redis']}/0"),
            ("firestore emulator", f"127.0.0.1:{p['firestore']}"),
            ("pubsub emulator", f"127.0.0.1:{p['pubsub']}"),
            ("ERP receiver", f"http://127.0.0.1:{p['erp']}"),
            ("token issuer", f"{self.issuer}/certs"),
            ("payment provider", f"http://127.0.0.1:{p['payments']}"),
        ]
        rows += [(f"function {name}", self.function_url(name)) for name in FUNCTIONS]
        return rows


def kill_group(pgid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            try:  # reap our own child so it does not linger as a zombie
                os.waitpid(pgid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)


def group_alive(pgid: int | None) -> bool:
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def http_responds(url: str) -> bool:
    """True when an HTTP server answers at all (any status)."""
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def wait_for(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
