"""The public projects the zoo's architectures (and their reported accuracies) come from.

Each is cited as its own README gives it: the title of its top heading (decorative emoji
left out) and the address it publishes itself at. Where the README gives no address for the
project (only links to papers, datasets or placeholders such as `<repository-url>`), the
address is None and the citation says "not published": a guessed URL would be worse than none.
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_PUBLISHED = "not published"


@dataclass(frozen=True)
class Source:
    """A source project: its title and, where it publishes one, its address."""

    title: str
    url: str | None = None

    def citation(self) -> str:
        """'Title, URL' or 'Title, not published'."""
        return f"{self.title}, {self.url or NOT_PUBLISHED}"

    def markdown(self) -> str:
        """The citation as Markdown: the title in italics, the URL a link."""
        return f"*{self.title}*, " + (f"<{self.url}>" if self.url else NOT_PUBLISHED)


# quiz_dnn. Its README links nothing of its own.
QUIZ_DNN_PROJECT = Source("Deep Learning Project: CIFAR10 Image Classification")
# simple_cnn. Its README's links are the dataset's page and papers.
SIMPLE_CNN_PROJECT = Source("CIFAR-10 Image Classification")
# keras_cnn, custom_cnn, resnet18: three notebooks in one repository, cloned from this address.
THREE_NOTEBOOKS_PROJECT = Source(
    "CIFAR-10 Image Classification Project",
    "https://github.com/Rezaul33/Deep-Learning-Project-CIFAR-10-Image-Classifier")
# resnet26/34/50. Its README links papers and two uploaded files (a notebook, a report PDF)
# on a file-upload store, not a place the project is published.
RESNET_STUDY_PROJECT = Source("CIFAR-10 Image Classification with ResNet Architectures")
# optimized200k. Its README's clone command reads `git clone <repository-url>`.
OPTIMIZED_200K_PROJECT = Source("Optimized CIFAR-10 Classification with Advanced Data Augmentation")

PROJECTS = (QUIZ_DNN_PROJECT, SIMPLE_CNN_PROJECT, THREE_NOTEBOOKS_PROJECT, RESNET_STUDY_PROJECT,
            OPTIMIZED_200K_PROJECT)
