"""A private RabbitMQ broker for the livestream tests: `rabbitmq_broker` (module scope) starts Debian's
rabbitmq-server in user space (its own node name, epmd, AMQP and dist ports on 127.0.0.1, data, logs and feature
flags in a temporary folder, HOME there too) and stops it afterwards. Use it with
`from tests.integration.rabbitmq import rabbitmq_broker  # noqa: F401`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assistant.livestream.local_broker import LocalRabbitMQ, missing


@pytest.fixture(scope="module")
def rabbitmq_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRabbitMQ]:
    why = missing()
    if why:
        pytest.fail(f"The livestream tests need a RabbitMQ broker: {why}", pytrace=False)
    broker = LocalRabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
